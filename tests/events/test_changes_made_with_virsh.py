"""An administrator's virsh, outside webvirt: every change reaches the state cache and the socket."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable

import libvirt
import pytest

from tests import live
from tests.conftest import domain_xml
from tests.events.conftest import virsh
from tests.events.sockets import EventSocket, domain_event
from tests.live import wait_for
from webvirt.domains.models import Domain

REDIS_WAIT = 5  # channels-redis blocks this long at a time on Redis, waiting for the socket's next message
# Other runs' domains on the shared test driver are told to this socket too, and restart the quiet.
QUIET_WITHIN = 180.0


def quiet_for(sock: EventSocket, seconds: float) -> Callable[[], bool]:
    """A condition: nothing has reached `sock` for more than `seconds` s (counted from the first check)."""
    last = {"count": sock.mark(), "at": time.monotonic()}

    def quiet() -> bool:
        if sock.mark() != last["count"]:
            last.update(count=sock.mark(), at=time.monotonic())
        return time.monotonic() - last["at"] > seconds

    return quiet


def cached_state(host, uuid: str) -> str | None:  # type: ignore[no-untyped-def]
    row = Domain.objects.filter(host=host, uuid=uuid).first()
    return row.state if row else None


@pytest.mark.django_db(transaction=True)
def test_define_start_suspend_resume_destroy_and_undefine_with_virsh_reach_the_cache_and_the_socket(
        live_stack, test_host, admin, event_socket, test_conn, tmp_path):  # type: ignore[no-untyped-def]
    sock = event_socket(admin)
    name, uuid = f"virsh-{uuidlib.uuid4().hex[:8]}", str(uuidlib.uuid4())
    xml_file = tmp_path / f"{name}.xml"
    xml_file.write_text(domain_xml(name, uuid=uuid))
    steps = [(("define", str(xml_file)), "shutoff"), (("start", name), "running"), (("suspend", name), "paused"),
             (("resume", name), "running"), (("destroy", name), "shutoff")]
    try:
        for command, state in steps:
            mark = sock.mark()
            virsh(*command)
            event = sock.wait(domain_event(uuid, state), after=mark)
            assert (event["host"], event["name"]) == (test_host.pk, name), command
            wait_for(lambda state=state: cached_state(test_host, uuid) == state, timeout=live.EVENT_TIMEOUT)

        mark = sock.mark()
        virsh("undefine", name)
        event = sock.wait(domain_event(uuid, "removed"), after=mark)
        assert (event["host"], event["name"]) == (test_host.pk, name)
        wait_for(lambda: not Domain.objects.filter(host=test_host, uuid=uuid).exists(), timeout=live.EVENT_TIMEOUT)
    finally:
        try:
            dom = test_conn.lookupByUUIDString(uuid)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass


@pytest.mark.django_db(transaction=True)
def test_a_socket_quiet_for_longer_than_the_channel_layers_redis_wait_still_receives_events(
        live_stack, test_host, admin, event_socket, make_test_domain):  # type: ignore[no-untyped-def]
    # channels-redis blocks 5 s at a time on Redis; a client read timeout of the same length once
    # killed every consumer that had nothing to receive for a few seconds.
    sock = event_socket(admin)
    dom = make_test_domain()
    sock.wait(domain_event(dom.UUIDString(), "shutoff"))
    wait_for(quiet_for(sock, 2 * REDIS_WAIT + 1), timeout=QUIET_WITHIN, interval=0.2)
    mark = sock.mark()
    dom.create()
    sock.wait(domain_event(dom.UUIDString(), "running"), after=mark, timeout=live.EVENT_TIMEOUT)
