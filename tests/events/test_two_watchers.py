"""Two watchers on the same hosts: one of them holds each host, and hands it over when it dies."""

from __future__ import annotations

import signal
import time

import pytest

from tests import live
from tests.events.sockets import EventSocket, domain_event, wait_for

HANDOVER_SECONDS = 15  # The lease lives 10 s after its last renewal; the survivor polls every 2 s.


def suspend_and_resume(dom, sock: EventSocket, times: int) -> None:  # type: ignore[no-untyped-def]
    """Pause and resume `dom`, waiting for each change to reach the socket before the next."""
    uuid = dom.UUIDString()
    for _ in range(times):
        mark = sock.mark()
        dom.suspend()
        sock.wait(domain_event(uuid, "paused"), after=mark)
        mark = sock.mark()
        dom.resume()
        sock.wait(domain_event(uuid, "running"), after=mark)


def count(sock: EventSocket, uuid: str, state: str, after: int) -> int:
    return len(sock.matching(domain_event(uuid, state), after=after))


@pytest.mark.django_db(transaction=True)
def test_two_watchers_publish_each_event_once_and_the_survivor_takes_over_a_killed_ones_host(
        live_stack, test_host, admin, event_socket, make_test_domain, lease_holder):  # type: ignore[no-untyped-def]
    second = live.start_watcher(live_stack.log_dir, holder="w2")
    watchers = {"w1": live_stack.watcher, "w2": second}
    try:
        sock = event_socket(admin)
        dom = make_test_domain(start=True)
        uuid = dom.UUIDString()
        sock.wait(domain_event(uuid, "running"))
        wait_for(lambda: "watcher w2 started" in second.log_path.read_text())
        time.sleep(2.5)  # Both have now tried to lease every host at least once.
        holder = lease_holder(test_host.pk)
        assert holder in watchers

        mark = sock.mark()
        suspend_and_resume(dom, sock, times=3)
        time.sleep(1)  # Time for a second copy of any event to arrive.
        assert (count(sock, uuid, "paused", mark), count(sock, uuid, "running", mark)) == (3, 3)

        survivor = "w2" if holder == "w1" else "w1"
        killed_at = time.monotonic()
        watchers[holder].signal(signal.SIGKILL)
        watchers[holder].proc.wait(5)
        mark = sock.mark()
        dom.suspend()  # While nobody watches: the survivor's resynchronisation must publish it.
        wait_for(lambda: lease_holder(test_host.pk) == survivor, timeout=HANDOVER_SECONDS)
        sock.wait(domain_event(uuid, "paused"), after=mark, timeout=HANDOVER_SECONDS - (time.monotonic() - killed_at))

        mark = sock.mark()
        dom.resume()
        sock.wait(domain_event(uuid, "running"), after=mark)
        suspend_and_resume(dom, sock, times=2)
        time.sleep(1)
        assert (count(sock, uuid, "paused", mark), count(sock, uuid, "running", mark)) == (2, 3)
    finally:
        second.stop()
