"""Two watchers on the same hosts: one of them holds each host, and hands it over when it dies."""

from __future__ import annotations

import signal
import time

import pytest

from tests import live
from tests.events.sockets import EventSocket, domain_event
from tests.live import wait_for

# The lease lives 10 s after its last renewal and the survivor polls every 2 s: a handover takes 10-14 s
# on a quiet machine, longer on a busy one. A limit for a handover that never happens, not a speed figure.
HANDOVER_WITHIN = 60.0


def suspend_and_resume(dom, sock: EventSocket, times: int) -> None:  # type: ignore[no-untyped-def]
    """Pause and resume `dom`, waiting for each change to reach the socket before the next."""
    uuid = dom.UUIDString()
    for _ in range(times):
        mark = sock.mark()
        dom.suspend()
        sock.wait(domain_event(uuid, "paused"), after=mark, timeout=live.EVENT_TIMEOUT)
        mark = sock.mark()
        dom.resume()
        sock.wait(domain_event(uuid, "running"), after=mark, timeout=live.EVENT_TIMEOUT)


def states(sock: EventSocket, uuid: str, after: int) -> list[str]:
    """The states told about `uuid` after position `after`, in the order they arrived."""
    return [e["state"] for e in sock.matching(lambda e: e.get("type") == "domain" and e.get("uuid") == uuid, after)]


def told_last(dom, sock: EventSocket) -> None:  # type: ignore[no-untyped-def]
    """Pause `dom` and wait for it to be told: a change made after the ones a test counts, so that a
    second copy of any of those, published by the other watcher, would have arrived before it."""
    mark = sock.mark()
    dom.suspend()
    sock.wait(domain_event(dom.UUIDString(), "paused"), after=mark, timeout=live.EVENT_TIMEOUT)


@pytest.mark.django_db(transaction=True)
def test_two_watchers_publish_each_event_once_and_the_survivor_takes_over_a_killed_ones_host(
        live_stack, test_host, admin, event_socket, make_test_domain, lease_holder):  # type: ignore[no-untyped-def]
    second = live.start_watcher(live_stack.log_dir, holder="w2")
    watchers = {"w1": live_stack.watcher, "w2": second}
    try:
        sock = event_socket(admin)
        dom = make_test_domain(start=True)
        uuid = dom.UUIDString()
        sock.wait(domain_event(uuid, "running"), timeout=live.EVENT_TIMEOUT)
        wait_for(lambda: "watcher w2 started" in second.log_path.read_text(), timeout=live.EVENT_TIMEOUT)
        time.sleep(2.5)  # Both have now tried to lease every host at least once.
        holder = lease_holder(test_host.pk)
        assert holder in watchers

        mark = sock.mark()
        suspend_and_resume(dom, sock, times=3)
        told_last(dom, sock)
        assert states(sock, uuid, mark) == ["paused", "running"] * 3 + ["paused"]  # each told once
        mark = sock.mark()
        dom.resume()
        sock.wait(domain_event(uuid, "running"), after=mark, timeout=live.EVENT_TIMEOUT)

        survivor = "w2" if holder == "w1" else "w1"
        killed_at = time.monotonic()
        watchers[holder].signal(signal.SIGKILL)
        watchers[holder].proc.wait(5)
        mark = sock.mark()
        dom.suspend()  # While nobody watches: the survivor's resynchronisation must publish it.
        wait_for(lambda: lease_holder(test_host.pk) == survivor, timeout=HANDOVER_WITHIN)
        sock.wait(domain_event(uuid, "paused"), after=mark, timeout=HANDOVER_WITHIN - (time.monotonic() - killed_at))

        mark = sock.mark()
        dom.resume()
        sock.wait(domain_event(uuid, "running"), after=mark, timeout=live.EVENT_TIMEOUT)
        suspend_and_resume(dom, sock, times=2)
        told_last(dom, sock)
        assert states(sock, uuid, mark) == ["running"] + ["paused", "running"] * 2 + ["paused"]
    finally:
        second.stop()
