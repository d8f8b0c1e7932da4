"""Quotas per user and per group: refused with a clear 409 before anything starts, and held under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.catalog.conftest import clone, run
from tests.people import api_for, client_for
from webvirt.accounts.models import AuditEntry
from webvirt.catalog.models import Quota
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(("limit", "value", "count", "mode", "says"), [
    ("instances", 2, 3, "linked", "That needs 3 instances, but your quota has 2 left (of 2)."),
    ("vcpus", 1, 2, "linked", "That needs 2 vCPUs, but your quota has 1 left (of 1)."),
    ("memory_mib", 200, 2, "linked", "That needs 256 MiB of memory, but your quota has 200 left (of 200)."),
    ("disk_gib", 0, 1, "full", "That needs 0.06 GiB of disk, but your quota has 0 left (of 0)."),
])
def test_a_user_quota_refuses_what_does_not_fit_with_a_clear_409(template, bob, limit, value, count, mode, says):
    template.users.add(bob)
    Quota.objects.create(user=bob, **{limit: value})
    response = clone(bob, template, count=count, mode=mode)
    assert response.status_code == 409
    assert response.json()["error"].startswith(says)
    assert not Job.objects.exists() and not Domain.objects.filter(template=template).exists()


@pytest.mark.parametrize(("limit", "value", "count", "mode"), [
    ("instances", 1, 2, "linked"), ("vcpus", 1, 2, "linked"), ("memory_mib", 128, 2, "linked"),
    ("disk_gib", 0, 1, "full"),
])
def test_a_group_quota_refuses_what_does_not_fit_naming_the_group(template, dave, limit, value, count, mode):
    group = dave.groups.get()
    template.groups.add(group)
    Quota.objects.create(group=group, **{limit: value})
    response = clone(dave, template, count=count, mode=mode)
    assert response.status_code == 409
    assert "group teachers's quota" in response.json()["error"]
    assert not Job.objects.exists()


def test_the_quota_counts_clones_already_made_and_the_form_shows_what_is_left(template, bob):
    template.users.add(bob)
    Quota.objects.create(user=bob, instances=3, vcpus=10)
    assert run(clone(bob, template, count=2)).state == Job.SUCCEEDED
    assert api_for(bob).get("/api/v1/templates/quota/").json() == {
        "instances": 1, "vcpus": 8, "memory_mib": None, "disk_gib": None}
    page = client_for(bob).get(f"/templates/{template.pk}/").content.decode()
    assert '<dd data-left="machines">1</dd>' in page and '<dd data-left="vcpus">8</dd>' in page
    assert '<dd data-left="memory">unlimited</dd>' in page
    response = clone(bob, template, count=2, pattern=f"{template.name}-x{{n}}")
    assert response.status_code == 409 and "has 1 left (of 3)" in response.json()["error"]


REQUESTS, ALLOWED = 20, 5


def post_together(user, template, count: int) -> list[tuple[int, dict]]:  # type: ignore[no-untyped-def]
    """`count` API clients of `user` each ask for one clone, released at the same moment by a barrier;
    each thread has its own database connection, as each request of a real web server would."""
    clients = [api_for(user) for _ in range(count)]
    barrier = threading.Barrier(count)
    answers: list[tuple[int, dict]] = []

    def ask(i: int) -> None:
        try:
            barrier.wait(60)
            response = clients[i].post(f"/api/v1/templates/{template.pk}/clone/", {
                "count": 1, "name_pattern": f"{template.name}-t{i}-{{n}}", "mode": "linked", "start": False,
                "expires_at": (timezone.now() + timedelta(days=1)).isoformat()},
                format="json")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a request did not finish within 120 s"
    return answers


def test_concurrent_requests_cannot_together_exceed_the_quota(template, bob):
    """20 requests of one machine each, at once, against a quota of 5: exactly 5 are accepted.

    One after the other they would get the same answers; the point is that they overlap. Without the
    quota lock (the check and the job's reservation in one write transaction) many of them read the
    usage before any has reserved, and more than 5 are accepted: checked by removing the lock."""
    template.users.add(bob)
    Quota.objects.create(user=bob, instances=ALLOWED)
    answers = post_together(bob, template, REQUESTS)
    assert sorted(status for status, _ in answers) == [202] * ALLOWED + [409] * (REQUESTS - ALLOWED), answers
    refused = [body["error"] for status, body in answers if status == 409]
    assert all(error.startswith(f"That needs 1 instances, but your quota has 0 left (of {ALLOWED}).")
               for error in refused), refused
    assert sum(j.reserved["instances"] for j in Job.objects.all()) == ALLOWED


def test_an_administrator_sets_and_removes_quotas_on_the_quotas_page(admin_client, bob, dave):
    response = admin_client.post("/templates/quotas/", {"user": bob.pk, "instances": 5, "vcpus": "",
                                                        "memory_mib": 4096, "disk_gib": ""}, follow=True)
    assert "The quota of user bob is saved." in response.content.decode()
    assert (bob.quota.instances, bob.quota.vcpus, bob.quota.memory_mib) == (5, None, 4096)
    group = dave.groups.get()
    admin_client.post("/templates/quotas/", {"group": group.pk, "disk_gib": 20})
    assert Quota.objects.get(group=group).disk_gib == 20
    page = admin_client.get("/templates/quotas/").content.decode()
    assert "bob" in page and "teachers" in page
    response = admin_client.post("/templates/quotas/", {"user": bob.pk}, follow=True)
    assert "User bob has no quota now: no limits." in response.content.decode()
    assert not Quota.objects.filter(user=bob).exists()
    assert AuditEntry.objects.filter(action="quota.set", outcome="ok").count() == 3


def test_the_quotas_page_wants_a_user_or_a_group_and_hides_from_non_admins(admin_client, bob, dave):
    response = admin_client.post("/templates/quotas/", {"user": bob.pk, "group": dave.groups.get().pk})
    assert "Choose either a user or a group." in response.content.decode()
    assert not Quota.objects.exists()
    assert client_for(bob).get("/templates/quotas/").status_code == 404
    assert client_for(bob).post("/templates/quotas/", {"user": bob.pk}).status_code == 404
