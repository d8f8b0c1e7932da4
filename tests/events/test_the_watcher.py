"""The watcher process itself: hosts added and removed while it runs, and a clean stop."""

from __future__ import annotations

import time

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


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_watcher_cleanly_and_releases_its_leases(live_stack, test_host, lease_holder):  # type: ignore[no-untyped-def]
    wait_for(lambda: lease_holder(test_host.pk) == "w1")

    assert live_stack.watcher.stop() == 0
    assert lease_holder(test_host.pk) is None
    assert "watcher w1 stopped" in live_stack.watcher.log_path.read_text()
