"""`GET /metrics`: who may scrape it, and what Prometheus reads from it (parsed with prometheus_client's
own parser)."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics.conftest import insert, point
from tests.people import api_for, client_for
from webvirt.metrics.models import TIERS
from webvirt.virt.stats import DOMAIN_SERIES, HOST_SERIES

pytestmark = pytest.mark.django_db
REFUSAL = "An administrator's API token (Authorization: Token <key>) or an allowed address is needed.\n"


@pytest.fixture
def scene(make_host, make_domain, bob):  # type: ignore[no-untyped-def]
    """A host with bob's domain, an ownerless one with an awkward name, one that stopped a while ago,
    and the history of a domain since removed; their newest samples."""
    host = make_host()
    mine = make_domain(host, owner=bob)
    odd = make_domain(host, name='web "01" \\ test')
    stopped = make_domain(host, owner=bob)
    now = int(time.time()) // TIERS[0].step * TIERS[0].step
    insert(point("h", host.pk, 0, now - TIERS[0].step, cpu_percent=10.0, memory_mib=1000.0),
           point("h", host.pk, 0, now, cpu_percent=12.5, memory_mib=2048.0, memory_total_mib=8192.0),
           point("d", mine.pk, 0, now - TIERS[0].step, cpu_percent=1.0),
           point("d", mine.pk, 0, now, cpu_percent=42.0, cpu_host_percent=5.25, memory_mib=300.0,
                 net_rx_bps=1500.0),
           point("d", odd.pk, 0, now - TIERS[0].step, cpu_percent=7.0),  # its newest, one pass late
           point("d", stopped.pk, 0, now - 4 * TIERS[0].step, cpu_percent=99.0),  # four passes ago: stopped
           point("d", mine.pk + odd.pk + stopped.pk, 0, now, cpu_percent=66.0),  # no such domain any more
           point("d", mine.pk, 1, now, cpu_percent=77.0))  # a rollup row: not the newest sample
    return {"host": host, "mine": mine, "odd": odd, "now": now}


def scrape(client) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_LATEST  # the text format
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def samples(family) -> dict:  # type: ignore[no-untyped-def]
    return {tuple(sorted(s.labels.items())): (s.value, s.timestamp) for s in family.samples}


def test_prometheus_reads_every_figure_of_every_running_object_with_its_labels(scene, admin, bob):
    families = scrape(api_for(admin))

    assert set(families) == ({f"webvirt_host_{n}" for n in HOST_SERIES}
                             | {f"webvirt_domain_{n}" for n in DOMAIN_SERIES})
    assert all(f.type == "gauge" and f.documentation for f in families.values())
    host, mine, odd, now = scene["host"], scene["mine"], scene["odd"], scene["now"]
    assert samples(families["webvirt_host_cpu_percent"]) == {(("host", host.name),): (12.5, now)}
    assert samples(families["webvirt_host_memory_total_mib"]) == {(("host", host.name),): (8192.0, now)}

    def labels(domain, owner: str) -> tuple:  # type: ignore[no-untyped-def]
        return tuple(sorted({"host": host.name, "domain": domain.name, "uuid": domain.uuid, "owner": owner}.items()))

    assert samples(families["webvirt_domain_cpu_percent"]) == {
        labels(mine, bob.username): (42.0, now),
        labels(odd, ""): (7.0, now - TIERS[0].step),  # the quotes and backslash come back as they were
    }
    assert samples(families["webvirt_domain_cpu_host_percent"]) == {labels(mine, bob.username): (5.25, now)}
    assert samples(families["webvirt_domain_net_rx_bps"]) == {labels(mine, bob.username): (1500.0, now)}
    assert families["webvirt_domain_disk_read_bps"].samples == []  # never known: no sample rather than 0


def test_an_empty_history_is_a_valid_empty_scrape(admin):
    families = scrape(api_for(admin))
    assert all(f.samples == [] for f in families.values())


def test_anonymous_is_refused_with_a_sentence(scene, client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.content.decode() == REFUSAL


def test_a_non_administrators_token_or_session_is_refused(scene, bob):
    assert api_for(bob).get("/metrics").status_code == 401
    assert client_for(bob).get("/metrics").status_code == 401


def test_a_wrong_token_is_refused(scene, client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token not-a-token-anyone-has").status_code == 401


def test_an_administrators_session_may_scrape(scene, admin):
    assert "webvirt_domain_cpu_percent" in scrape(client_for(admin))


def test_an_allowed_address_needs_no_token(scene, client, settings):
    settings.WEBVIRT_METRICS_ALLOW = ["127.0.0.1/32"]  # the test client's REMOTE_ADDR
    families = scrape(client)
    assert len(families["webvirt_domain_cpu_percent"].samples) == 2

    settings.WEBVIRT_METRICS_ALLOW = ["10.0.0.0/8", "::1/128"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200


def test_a_forwarded_for_header_from_an_untrusted_peer_is_not_believed(scene, client, settings):
    settings.WEBVIRT_METRICS_ALLOW = ["10.0.0.0/8"]
    settings.WEBVIRT_TRUSTED_PROXIES = []
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401
