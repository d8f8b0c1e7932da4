"""Changes made outside webvirt reach the state cache and the WebSocket (real watcher, real Redis)."""

from __future__ import annotations

import pytest

from tests.events.sockets import domain_event
from tests.live import wait_for
from webvirt.domains.models import Domain


@pytest.mark.django_db(transaction=True)
def test_a_domain_started_outside_webvirt_reaches_the_cache_and_the_socket(event_socket, test_host, admin,
                                                                          make_test_domain):
    dom = make_test_domain()
    wait_for(lambda: Domain.objects.filter(host=test_host, uuid=dom.UUIDString()).exists())
    sock = event_socket(admin)
    assert sock.hello["type"] == "hello"
    dom.create()
    event = sock.wait(domain_event(dom.UUIDString(), "running"))
    assert event["type"] == "domain" and event["host"] == test_host.pk and event["name"] == dom.name()
    assert Domain.objects.get(host=test_host, uuid=dom.UUIDString()).state == "running"
