"""The live path: the real web server and event watcher, the watcher's usage pass every
WEBVIRT_METRICS_INTERVAL seconds, and `/ws/events/` clients subscribed to objects' live figures.

The watcher is the real one with readings that carry figures (tests/metrics/figures_watcher.py): the
test driver reports none, and a pass sends nothing for a domain without figures.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests import live
from tests.events.sockets import EventSocket
from tests.live import wait_for
from tests.metrics.figures_watcher import MEMORY_KIB
from webvirt.accounts.tokens import create_token
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db(transaction=True)
INTERVAL = 2  # seconds: the smallest the settings accept
SOON = 2 * INTERVAL + 1  # two passes, and a second for the round trip


@pytest.fixture
def stack(transactional_db, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The web server and the watcher, passing every INTERVAL seconds (the live processes take their
    environment from this one's: tests/live.py)."""
    monkeypatch.setenv("WEBVIRT_METRICS_INTERVAL", str(INTERVAL))
    web, url = live.start_web(tmp_path)
    watcher = live.Process("watcher", [sys.executable, "-m", "tests.metrics.figures_watcher", "--holder", "m1"],
                           tmp_path)
    yield web, url, watcher
    watcher.stop()
    web.stop()


@pytest.fixture
def socket_for(stack) -> Iterator[Callable[..., EventSocket]]:  # type: ignore[no-untyped-def]
    web, url, _ = stack
    sockets: list[EventSocket] = []

    def open_as(user) -> EventSocket:  # type: ignore[no-untyped-def]
        sock = EventSocket(url, {"Authorization": f"Token {create_token(user)[1]}"})
        sockets.append(sock)
        return sock

    yield open_as
    for sock in sockets:
        sock.close()
    # As tests/events does: uvicorn would wait for each closed socket's pending Redis read, one by one.
    web.signal(signal.SIGTERM)
    time.sleep(0.2)
    web.signal(signal.SIGINT)


def subscribe(sock: EventSocket, *objects: str) -> None:
    sock.ws.send(json.dumps({"type": "subscribe", "metrics": list(objects)}))


def metrics(kind: str, pk: int) -> Callable[[dict], bool]:
    return lambda e: e.get("type") == "metrics" and e.get("kind") == kind and e.get("id") == pk


def received(sock: EventSocket) -> set[tuple[str, int]]:
    return {(e["kind"], e["id"]) for e in sock.matching(lambda e: e.get("type") == "metrics")}


def cached_row(host, dom) -> Domain:  # type: ignore[no-untyped-def]
    """The row the watcher made for a domain it was told about (the test does not write it: no race)."""
    return wait_for(lambda: Domain.objects.filter(host=host, uuid=dom.UUIDString(), state="running").first())


def test_subscribers_receive_the_live_samples_they_may_see_and_no_others(
        stack, test_host, make_test_domain, socket_for, admin, bob, stranger):
    bobs = cached_row(test_host, make_test_domain(start=True))
    strangers = cached_row(test_host, make_test_domain(start=True))
    Domain.objects.filter(pk=bobs.pk).update(owner=bob)
    Domain.objects.filter(pk=strangers.pk).update(owner=stranger)
    # The watcher's passes include bob's domain now, and have for two passes (its CPU is a rate).
    wait_for(lambda: Domain.objects.filter(pk=bobs.pk, memory_used_mib=MEMORY_KIB / 1024)
             .exclude(cpu_percent=None).exists(), timeout=15)

    owner, outsider, administrator = socket_for(bob), socket_for(stranger), socket_for(admin)
    subscribe(owner, f"d:{bobs.pk}", f"h:{test_host.pk}")  # a host's figures are for administrators only
    subscribe(outsider, f"d:{bobs.pk}", f"d:{strangers.pk}")
    subscribe(administrator, f"h:{test_host.pk}", f"d:{bobs.pk}")
    subscribed = time.monotonic()

    sample = owner.wait(metrics("d", bobs.pk), timeout=SOON)
    assert time.monotonic() - subscribed < SOON
    assert set(sample) == {"type", "kind", "id", "t", "values"}
    assert sample["t"] % INTERVAL == 0 and abs(sample["t"] - time.time()) < 2 * INTERVAL
    assert sample["values"]["memory_mib"] == 256.0
    assert sample["values"]["cpu_percent"] == pytest.approx(10.0, abs=1.0)  # a tenth of its one vCPU
    administrator.wait(metrics("h", test_host.pk), timeout=SOON)
    administrator.wait(metrics("d", bobs.pk), timeout=SOON)
    outsider.wait(metrics("d", strangers.pk), timeout=SOON)  # the outsider's subscriptions do work
    # Everyone has had as long as the owner, and one more pass besides.
    owner.wait(lambda e: metrics("d", bobs.pk)(e) and e["t"] > sample["t"], timeout=SOON)

    assert received(outsider) == {("d", strangers.pk)}  # nothing of bob's domain
    assert received(owner) == {("d", bobs.pk)}  # nothing of the host's
    assert received(administrator) == {("h", test_host.pk), ("d", bobs.pk)}
