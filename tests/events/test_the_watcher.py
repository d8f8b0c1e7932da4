"""The watcher process itself: hosts added and removed while it runs, and a clean stop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests import live
from tests.conftest import TEST_URI
from tests.events.sockets import domain_event, host_event
from tests.live import wait_for
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host


def about(sock, uuid: str, after: int) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """(host, state) of each event about domain `uuid` that arrived after position `after`, in order."""
    return [(e["host"], e["state"]) for e in sock.matching(lambda e: e.get("uuid") == uuid, after=after)]


@pytest.mark.django_db(transaction=True)
def test_a_host_added_while_the_watcher_runs_is_picked_up_and_a_removed_one_is_dropped(
        live_stack, test_host, admin, event_socket, make_test_domain, test_conn, lease_holder):  # type: ignore[no-untyped-def]
    # test_host is the same test driver under another host row, watched all along: through it, the
    # same changes must still be told after the added host is removed.
    sock = event_socket(admin)
    dom = make_test_domain()
    uuid = dom.UUIDString()
    wait_for(lambda: "watcher w1 started" in live_stack.watcher.output(), timeout=live.EVENT_TIMEOUT)

    host = Host.objects.create(name="added-later", uri=TEST_URI)
    sock.wait(host_event(host.pk, "online"), timeout=live.EVENT_TIMEOUT)
    wait_for(lambda: Domain.objects.filter(host=host, uuid=uuid).exists(), timeout=live.EVENT_TIMEOUT)
    assert lease_holder(host.pk) == "w1"

    host.delete()
    wait_for(lambda: lease_holder(host.pk) is None, timeout=live.EVENT_TIMEOUT)
    sock.wait(lambda e: e.get("uuid") == uuid and e.get("host") == test_host.pk, timeout=live.EVENT_TIMEOUT)
    mark = sock.mark()
    dom.create()  # must not be told through the removed host; must be through test_host
    sock.wait(domain_event(uuid, "running"), after=mark, timeout=live.EVENT_TIMEOUT)
    dom.suspend()  # must be told (through test_host) after anything still coming about the start
    sock.wait(domain_event(uuid, "paused"), after=mark, timeout=live.EVENT_TIMEOUT)
    assert about(sock, uuid, mark) == [(test_host.pk, "running"), (test_host.pk, "paused")]
    assert not Domain.objects.filter(host_id=host.pk).exists()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word: a host that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_watcher_cleanly_and_releases_its_leases_even_while_a_host_hangs(
        live_stack, test_host, silent_port, lease_holder):  # type: ignore[no-untyped-def]
    hung = Host.objects.create(name="hangs", uri=f"qemu+tcp://127.0.0.1:{silent_port}/system")
    wait_for(lambda: lease_holder(test_host.pk) == lease_holder(hung.pk) == "w1", timeout=live.EVENT_TIMEOUT)
    time.sleep(0.5)  # The watcher is now waiting on the hung host (it gives up after 5 s).

    # Stopped by itself (exit code 0), not killed after live.EVENT_TIMEOUT: a watcher that waited for
    # the hung open would never stop, since that open blocks for as long as the port stays silent.
    started = time.monotonic()
    assert live_stack.watcher.stop(timeout=live.EVENT_TIMEOUT) == 0
    assert time.monotonic() - started < live.EVENT_TIMEOUT
    assert lease_holder(test_host.pk) is None and lease_holder(hung.pk) is None
    assert "watcher w1 stopped" in live_stack.watcher.log_path.read_text()
