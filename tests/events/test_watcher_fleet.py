"""Several watchers share the hosts: a fair share each, a newcomer gets its share, a killed one's hosts
are taken over and caught up.

Every host is the shared test driver (test+unix:///default) registered under another name, so that
a change to one domain is an event on each host, and whichever hosts change hands, a host watched
by two watchers at once would show as an event published twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests import live
from tests.conftest import TEST_URI
from tests.events.sockets import EventSocket, Match, domain_event
from tests.live import wait_for
from webvirt.domains.models import Domain
from webvirt.events.leases import preferred_holders
from webvirt.hosts.models import Host

TAKEOVER_SECONDS = 30  # The goal; the lease lives 10 s after its last renewal, and passes are 2 s apart.


@pytest.fixture
def fleet_hosts(test_host) -> list[Host]:  # type: ignore[no-untyped-def]
    """Six hosts, all on the shared test driver."""
    return [test_host, *(Host.objects.create(name=f"fleet{i}", uri=TEST_URI) for i in range(1, 6))]


@pytest.fixture
def start_watchers(live_stack) -> Iterator[Callable[..., dict[str, live.Process]]]:  # type: ignore[no-untyped-def]
    """Start more watchers beside live_stack's w1; returns all of them by name. Stopped after the test."""
    started: list[live.Process] = []

    def start(*holders: str) -> dict[str, live.Process]:
        for holder in holders:
            started.append(live.start_watcher(live_stack.log_dir, holder=holder))
        return {"w1": live_stack.watcher, **{p.name.removeprefix("watcher-"): p for p in started}}

    yield start
    for process in started:
        process.stop()


def holders_of(hosts: list[Host], lease_holder) -> dict[int, str | None]:  # type: ignore[no-untyped-def]
    return {host.pk: lease_holder(host.pk) for host in hosts}


def shared_fairly(hosts: list[Host], lease_holder, names: set[str]) -> dict[int, str] | None:  # type: ignore[no-untyped-def]
    """The holders when every host is held by one of `names`, none holding two more than another; else None."""
    holders = holders_of(hosts, lease_holder)
    counts = Counter(holders.values())
    if set(counts) == names and max(counts.values()) - min(counts.values()) <= 1:
        return holders  # type: ignore[return-value]
    return None


def test_every_watcher_is_preferred_for_a_fair_share_and_a_newcomer_takes_only_its_own():
    hosts, three = list(range(100, 200)), ["w1", "w2", "w3"]
    before = preferred_holders(hosts, three)
    assert sorted(Counter(before.values()).values()) == [33, 33, 34]
    assert preferred_holders(list(reversed(hosts)), list(reversed(three)), before) == before  # same view, same answer

    after = preferred_holders(hosts, [*three, "w4"], before)
    assert sorted(Counter(after.values()).values()) == [25, 25, 25, 25]
    assert sum(before[h] != after[h] for h in hosts) == 25  # only the newcomer's share moves
    # One leaves: only its hosts move. A host is added: no other host moves.
    two = preferred_holders(hosts, ["w1", "w2"], before)
    assert all(two[h] == before[h] for h in hosts if before[h] != "w3")
    assert {h: w for h, w in preferred_holders([*hosts, 200], three, before).items() if h != 200} == before


def on_host(host: Host, match: Match) -> Match:
    return lambda e: e.get("host") == host.pk and match(e)


def flip(dom, sock: EventSocket, hosts: list[Host]) -> None:  # type: ignore[no-untyped-def]
    """Suspend and resume, each change reaching the socket from every host before the next is made."""
    for change, state in ((dom.suspend, "paused"), (dom.resume, "running")):
        mark = sock.mark()
        change()
        for host in hosts:
            sock.wait(on_host(host, domain_event(dom.UUIDString(), state)), after=mark, timeout=10)


@pytest.mark.django_db(transaction=True)
def test_watchers_share_the_hosts_fairly_a_newcomer_gets_its_share_and_a_leaver_hands_its_own_back(
        live_stack, fleet_hosts, start_watchers, admin, event_socket, make_test_domain, lease_holder):  # type: ignore[no-untyped-def]
    start_watchers("w2", "w3")
    holders = wait_for(lambda: shared_fairly(fleet_hosts, lease_holder, {"w1", "w2", "w3"}), timeout=15)
    assert sorted(Counter(holders.values()).values()) == [2, 2, 2]
    sock = event_socket(admin)
    dom = make_test_domain(start=True)
    for host in fleet_hosts:
        sock.wait(on_host(host, domain_event(dom.UUIDString(), "running")))
    # Defining and starting can be published as "running" twice (the second event arrives while the
    # first is read); one flip first, so that nothing from before is counted below.
    flip(dom, sock, fleet_hosts)

    mark, flips = sock.mark(), 0
    joined_at = time.monotonic()
    start_watchers("w4")
    # Changes are made all through the handover, until the newcomer holds its share.
    while flips < 2 or not shared_fairly(fleet_hosts, lease_holder, {"w1", "w2", "w3", "w4"}):
        assert time.monotonic() - joined_at < 15, f"w4 did not get its share: {holders_of(fleet_hosts, lease_holder)}"
        flip(dom, sock, fleet_hosts)
        flips += 1
    assert sorted(Counter(holders_of(fleet_hosts, lease_holder).values()).values()) == [1, 1, 2, 2]
    time.sleep(1)  # Time for a second copy of any event to arrive.
    for host in fleet_hosts:
        published = [len(sock.matching(on_host(host, domain_event(dom.UUIDString(), state)), after=mark))
                     for state in ("paused", "running")]
        assert published == [flips, flips], f"{host.name} was watched twice or not at all: {published}"

    # A clean stop hands the hosts back at once (the leases are released), not after the lease's TTL.
    stopped_at = time.monotonic()
    assert start_watchers()["w4"].stop() == 0
    wait_for(lambda: shared_fairly(fleet_hosts, lease_holder, {"w1", "w2", "w3"}), timeout=8)
    assert time.monotonic() - stopped_at < 8


@pytest.mark.django_db(transaction=True)
def test_a_killed_watchers_hosts_are_taken_over_and_what_changed_meanwhile_reaches_the_cache(
        live_stack, fleet_hosts, start_watchers, admin, event_socket, make_test_domain, lease_holder):  # type: ignore[no-untyped-def]
    watchers = start_watchers("w2", "w3")
    holders = wait_for(lambda: shared_fairly(fleet_hosts, lease_holder, {"w1", "w2", "w3"}), timeout=15)
    sock = event_socket(admin)
    running = make_test_domain(start=True)
    for host in fleet_hosts:
        sock.wait(on_host(host, domain_event(running.UUIDString(), "running")))

    victim = holders[fleet_hosts[0].pk]
    orphans = [host for host in fleet_hosts if holders[host.pk] == victim]
    killed_at = time.monotonic()
    watchers[victim].signal(signal.SIGKILL)
    watchers[victim].proc.wait(5)
    mark = sock.mark()
    # While nobody watches the orphans: one domain paused, one defined. Only a resynchronisation by
    # the watcher taking each over can bring them into its cache.
    running.suspend()
    added = make_test_domain()

    survivors = {"w1", "w2", "w3"} - {victim}
    wait_for(lambda: all(lease_holder(host.pk) in survivors for host in orphans), timeout=TAKEOVER_SECONDS)
    for host in orphans:
        sock.wait(on_host(host, domain_event(running.UUIDString(), "paused")), after=mark,
                  timeout=TAKEOVER_SECONDS - (time.monotonic() - killed_at))
        sock.wait(on_host(host, domain_event(added.UUIDString(), "shutoff")), after=mark, timeout=5)
        assert Domain.objects.get(host=host, uuid=running.UUIDString()).state == "paused"
        assert Domain.objects.filter(host=host, uuid=added.UUIDString()).exists()
    assert time.monotonic() - killed_at < TAKEOVER_SECONDS
    assert wait_for(lambda: shared_fairly(fleet_hosts, lease_holder, survivors), timeout=10)
