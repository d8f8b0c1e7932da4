"""`GET /api/v1/domains/<id>/metrics/` and `/api/v1/hosts/<id>/metrics/`: shapes and who may read them.

The history is written directly (rows at the real clock: the API reads "now" from it)."""

from __future__ import annotations

import time

import pytest

from tests.metrics.conftest import every_figure, insert, point
from tests.people import api_for
from webvirt.domains.models import Domain
from webvirt.metrics.models import TIERS
from webvirt.virt.stats import DOMAIN_SERIES, HOST_SERIES

pytestmark = pytest.mark.django_db


@pytest.fixture
def at() -> dict[int, int]:
    """For each tier, the start of its current step: inside every range that reads the tier."""
    now = int(time.time())
    return {tier.level: now - now % tier.step for tier in TIERS}


@pytest.fixture
def bobs(make_host, make_domain, bob, at):  # type: ignore[no-untyped-def]
    """Bob's domain on a host, with a sample in every tier, and the host's own."""
    host = make_host()
    domain = make_domain(host, owner=bob)
    for tier in TIERS:
        insert(point("d", domain.pk, tier.level, at[tier.level], n=1, **every_figure(10.0 + tier.level)),
               point("h", host.pk, tier.level, at[tier.level], n=1, **every_figure(50.0 + tier.level)))
    return domain


def test_an_owner_reads_their_domains_series_for_each_range(bobs, bob, at):
    for range_name, level, step in (("1h", 0, TIERS[0].step), ("24h", 1, 60), ("7d", 2, 1800), ("30d", 3, 21600),
                                    ("1y", 3, 21600)):
        response = api_for(bob).get(f"/api/v1/domains/{bobs.pk}/metrics/", {"range": range_name})
        assert response.status_code == 200, response.json()
        body = response.json()
        assert set(body) == {"step", "range", "series"}
        assert (body["step"], body["range"]) == (step, range_name)
        assert set(body["series"]) == set(DOMAIN_SERIES)
        assert body["series"]["cpu_percent"] == [[at[level], 10.0 + level, 10.0 + level]], range_name


def test_the_default_range_is_the_last_hour(bobs, bob):
    body = api_for(bob).get(f"/api/v1/domains/{bobs.pk}/metrics/").json()
    assert (body["range"], body["step"]) == ("1h", TIERS[0].step)


def test_an_administrator_reads_any_domains_series(bobs, admin, at):
    body = api_for(admin).get(f"/api/v1/domains/{bobs.pk}/metrics/?range=24h").json()
    assert body["series"]["memory_mib"] == [[at[1], 11.0, 11.0]]


def test_someone_elses_domain_does_not_exist_for_a_stranger(bobs, stranger):
    response = api_for(stranger).get(f"/api/v1/domains/{bobs.pk}/metrics/")
    assert response.status_code == 404
    assert "series" not in response.json()


def test_a_domain_without_history_has_empty_series(make_host, make_domain, bob):
    fresh = make_domain(make_host(), owner=bob)
    body = api_for(bob).get(f"/api/v1/domains/{fresh.pk}/metrics/").json()
    assert body["series"] == {name: [] for name in DOMAIN_SERIES}


def test_a_bad_range_is_a_400_with_a_sentence(bobs, bob):
    response = api_for(bob).get(f"/api/v1/domains/{bobs.pk}/metrics/?range=2w")
    assert response.status_code == 400
    assert response.json() == {"error": "'2w' is not a range; use one of 1h, 24h, 7d, 30d, 1y.", "code": "invalid"}


def test_an_administrator_reads_a_hosts_series_and_its_busiest_domains(bobs, admin, make_domain, at):
    host = bobs.host
    idle, busy = make_domain(host), make_domain(host)
    insert(point("d", idle.pk, 1, at[1], cpu_host_percent=1.0), point("d", busy.pk, 1, at[1], cpu_host_percent=90.0))

    response = api_for(admin).get(f"/api/v1/hosts/{host.pk}/metrics/?range=24h")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"step", "range", "series", "top"}
    assert set(body["series"]) == set(HOST_SERIES)
    assert body["series"]["memory_total_mib"] == [[at[1], 51.0, 51.0]]
    assert [(d["id"], d["name"]) for d in body["top"]] == [(busy.pk, busy.name), (bobs.pk, bobs.name),
                                                          (idle.pk, idle.name)]
    assert body["top"][0]["cpu_host_percent"] == [[at[1], 90.0, 90.0]]


def test_a_hosts_series_does_not_exist_for_a_non_administrator(bobs, bob, stranger):
    for user in (bob, stranger):  # bob owns a domain on it: still no host figures
        response = api_for(user).get(f"/api/v1/hosts/{bobs.host_id}/metrics/")
        assert response.status_code == 404, user
        assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_a_bad_range_for_a_host_is_a_400(bobs, admin):
    response = api_for(admin).get(f"/api/v1/hosts/{bobs.host_id}/metrics/?range=forever")
    assert response.status_code == 400
    assert response.json()["error"].startswith("'forever' is not a range;")


def test_anonymous_requests_are_refused(bobs, client):
    assert client.get(f"/api/v1/domains/{bobs.pk}/metrics/").status_code == 401
    assert client.get(f"/api/v1/hosts/{bobs.host_id}/metrics/").status_code == 401


def test_the_domain_list_sorts_by_the_latest_cpu_and_memory(make_host, make_domain, bob):
    host = make_host()
    for cpu, used in ((5.0, 300.0), (50.0, 100.0), (20.0, 200.0)):
        make_domain(host, owner=bob, cpu_percent=cpu, memory_used_mib=used)

    def order(sort: str) -> list[tuple[float, float]]:
        response = api_for(bob).get(f"/api/v1/domains/?sort={sort}")
        assert response.status_code == 200, response.json()
        return [(d["cpu_percent"], d["memory_used_mib"]) for d in response.json()["results"]]

    assert order("-cpu") == [(50.0, 100.0), (20.0, 200.0), (5.0, 300.0)]
    assert order("used") == [(50.0, 100.0), (20.0, 200.0), (5.0, 300.0)]
    assert Domain.objects.filter(owner=bob).count() == 3
