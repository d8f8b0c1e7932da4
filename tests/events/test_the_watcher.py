"""The watcher process itself: hosts added and removed while it runs, and a clean stop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.events.sockets import host_event, wait_for
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host


@pytest.mark.django_db(transaction=True)
def test_a_host_added_while_the_watcher_runs_is_picked_up_and_a_removed_one_is_dropped(
        live_stack, admin, event_socket, make_test_domain, test_conn, lease_holder):  # type: ignore[no-untyped-def]
    sock = event_socket(admin)
    dom = make_test_domain()
    uuid = dom.UUIDString()
    wait_for(lambda: "watcher w1 started" in live_stack.watcher.output())

    host = Host.objects.create(name="added-later", uri="test+unix:///default")
    sock.wait(host_event(host.pk, "online"), timeout=5)
    wait_for(lambda: Domain.objects.filter(host=host, uuid=uuid).exists(), timeout=5)
    assert lease_holder(host.pk) == "w1"

    host.delete()
    wait_for(lambda: lease_holder(host.pk) is None, timeout=5)
    mark = sock.mark()
    dom.create()
    time.sleep(1)  # A watcher still holding the host would have published this by now.
    assert sock.matching(lambda e: e.get("host") == host.pk, after=mark) == []
    assert not Domain.objects.filter(uuid=uuid).exists()


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
    wait_for(lambda: lease_holder(test_host.pk) == lease_holder(hung.pk) == "w1")
    time.sleep(0.5)  # The watcher is now waiting on the hung host (it gives up after 5 s).

    started = time.monotonic()
    assert live_stack.watcher.stop() == 0
    assert time.monotonic() - started < 5
    assert lease_holder(test_host.pk) is None and lease_holder(hung.pk) is None
    assert "watcher w1 stopped" in live_stack.watcher.log_path.read_text()
