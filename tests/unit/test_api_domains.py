"""The domain API on libvirt's test driver through the daemon."""

from __future__ import annotations

import pytest

from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db


def test_it_lists_domains_from_the_cache_with_filters(api, test_host, make_test_domain):
    from webvirt.domains.services import sync_host

    make_test_domain("web01")
    make_test_domain("db01", start=True)
    sync_host(test_host)
    response = api.get("/api/v1/domains/", {"search": "web", "host": test_host.pk})
    assert response.status_code == 200
    assert [d["name"] for d in response.json()["results"]] == ["web01"]
    running = api.get("/api/v1/domains/", {"state": "running"}).json()["results"]
    assert "db01" in {d["name"] for d in running}
    assert set(running[0]) >= {"id", "uuid", "name", "host", "state", "vcpus", "memory_mib", "autostart",
                               "persistent"}


def test_it_starts_and_suspends_a_domain_and_libvirt_agrees(api, test_host, make_test_domain, test_conn):
    dom = make_test_domain("web02")
    from webvirt.domains.services import sync_host

    sync_host(test_host)
    row = Domain.objects.get(name="web02")
    assert api.post(f"/api/v1/domains/{row.pk}/start/").json()["state"] == "running"
    assert dom.isActive()
    assert api.post(f"/api/v1/domains/{row.pk}/suspend/").json()["state"] == "paused"
    assert test_conn.lookupByName("web02").state()[0] == 3  # VIR_DOMAIN_PAUSED
    assert AuditEntry.objects.filter(action="domain.suspend", outcome="ok", object_repr="web02").exists()


def test_it_refuses_an_action_the_state_does_not_allow(api, test_host, make_test_domain):
    make_test_domain("web03")
    from webvirt.domains.services import sync_host

    sync_host(test_host)
    row = Domain.objects.get(name="web03")
    response = api.post(f"/api/v1/domains/{row.pk}/suspend/")
    assert response.status_code == 409
    assert "shut off" in response.json()["error"]
    assert AuditEntry.objects.filter(action="domain.suspend", outcome="failed").exists()
