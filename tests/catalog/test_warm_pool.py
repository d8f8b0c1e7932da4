"""Warm pools on the test driver: filling, handing out, refilling, budget, quota, who sees what.

Refill jobs run in this process (runner.execute). The test driver's guests print nothing, so a warm
machine is "booted" once it stays running: the settle time is cut to nothing here.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.catalog.conftest import clone
from tests.people import api_for, client_for
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor
from webvirt.catalog import jobs as catalog_jobs
from webvirt.catalog import warm
from webvirt.catalog.models import Quota, WarmMachine
from webvirt.dbthreads import closing_connections
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job
from webvirt.virt import hostinfo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_settle(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(catalog_jobs, "SETTLE_SECONDS", 0.0)


def refill(template) -> Job | None:  # type: ignore[no-untyped-def]
    """Run the template's queued refill job here and now (starting one if none is queued)."""
    job = Job.objects.filter(kind=warm.KIND, state=Job.QUEUED, target_id=str(template.pk)).first() \
        or warm.start_refill(template)
    if job is not None:
        runner.execute(job.pk)
        job.refresh_from_db()
    return job


def fill(admin, template, size: int) -> None:  # type: ignore[no-untyped-def]
    warm.set_size(Actor(user=admin), template, size)
    job = refill(template)
    assert job is not None and job.state == Job.SUCCEEDED, job and (job.error, job.log)
    assert warm.status(template).warm == size


def ask_one(user, template):  # type: ignore[no-untyped-def]
    # Names unique to this test: the test driver is shared by every run going on.
    return clone(user, template, count=1, pattern=f"{template.name}-u{{n:02}}", start=True)


def test_a_request_gets_a_running_warm_machine_with_its_owner_expiry_and_title(admin, bob, template, test_conn):
    template.users.add(bob)
    fill(admin, template, 2)
    response = ask_one(bob, template)
    assert response.status_code == 201, response.json()
    body = response.json()
    title = f"{template.name}-u01"
    assert body["warm"] is True and "warm machine" in body["message"] and body["title"] == title
    domain = Domain.objects.get(pk=body["domain"]["id"])
    assert domain.owner == bob and domain.expires_at is not None and domain.state == "running"
    assert domain.name.startswith(f"{template.name}-warm-")  # the name stays; the title carries the asked one
    assert f"<title>{title}</title>" in test_conn.lookupByUUIDString(domain.uuid).XMLDesc(0)
    assert WarmMachine.objects.get(domain=domain).status == WarmMachine.HANDED_OUT
    handout = AuditEntry.objects.get(action="template.handout")
    assert handout.username == "bob" and handout.outcome == AuditEntry.OK and domain.name in handout.detail
    assert AuditEntry.objects.filter(action="template.warm_refill", outcome=AuditEntry.OK).count() == 2
    # The hand-out started a refill; once it has run, the pool is full again.
    assert refill(template).state == Job.SUCCEEDED
    assert warm.status(template).warm == 2


def test_two_requests_at_once_never_get_the_same_machine(admin, bob, dave, template):
    template.users.add(bob, dave)
    fill(admin, template, 2)
    answers: list = []

    @closing_connections  # each thread's connection back to PostgreSQL's pool
    def ask(user) -> None:  # type: ignore[no-untyped-def]
        answers.append(clone(user, template, count=1, pattern=f"{template.name}-{user.username}-{{n:02}}",
                             start=True))

    threads = [threading.Thread(target=ask, args=(u,)) for u in (bob, dave, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 202], [a.json() for a in answers]
    handed = [a.json()["domain"]["id"] for a in answers if a.status_code == 201]
    assert len(set(handed)) == 2
    assert WarmMachine.objects.filter(status=WarmMachine.HANDED_OUT).count() == 2


def test_an_empty_pool_falls_back_to_a_clone_job_and_says_so(admin, bob, template):
    template.users.add(bob)
    template.warm_count = 1
    template.save()
    response = ask_one(bob, template)
    assert response.status_code == 202, response.json()
    assert response.json()["warm"] is False and "No warm machine" in response.json()["message"]
    job = runner.execute(response.json()["job"])
    assert job == Job.SUCCEEDED and Domain.objects.get(name=f"{template.name}-u01").owner == bob


def test_users_never_see_warm_machines_only_administrators_do(admin, bob, stranger, template):
    template.users.add(bob)
    fill(admin, template, 1)
    name = WarmMachine.objects.get().domain.name
    for user in (bob, stranger):
        names = [d["name"] for d in api_for(user).get("/api/v1/domains/").json()["results"]]
        assert name not in names
        assert name not in client_for(user).get("/domains/").content.decode()
        assert api_for(user).get(f"/api/v1/templates/{template.pk}/warm/").status_code == 404
    assert name not in client_for(bob).get(f"/templates/{template.pk}/").content.decode()
    assert name in [d["name"] for d in api_for(admin).get("/api/v1/domains/", {"search": name}).json()["results"]]
    page = client_for(admin).get(f"/templates/{template.pk}/").content.decode()
    assert name in page and "1 of 1 warm" in page
    pool = api_for(admin).get(f"/api/v1/templates/{template.pk}/warm/").json()
    assert pool["warm"] == 1 and pool["machines"][0]["status"] == "warm"


def test_the_budget_limits_the_size_and_the_refill(admin, template, settings):
    settings.WEBVIRT_WARM_BUDGET_MIB = 300  # the template's machines have 128 MiB each
    response = api_for(admin).post(f"/api/v1/templates/{template.pk}/warm/", {"count": 3}, format="json")
    assert response.status_code == 409 and "384 MiB" in response.json()["error"] \
        and "300 MiB left" in response.json()["error"]
    fill(admin, template, 2)
    # The budget made smaller under a pool: the refill makes only what fits.
    WarmMachine.objects.filter(pk=WarmMachine.objects.first().pk).update(status=WarmMachine.HANDED_OUT)
    settings.WEBVIRT_WARM_BUDGET_MIB = 200
    assert warm.start_refill(template) is None  # 128 of 200 MiB held: no room for another 128
    settings.WEBVIRT_WARM_BUDGET_MIB = 256
    job = refill(template)
    assert job is not None and job.params["names"] and len(job.params["names"]) == 1


def test_the_quota_is_checked_before_a_machine_is_handed_out(admin, bob, template):
    template.users.add(bob)
    fill(admin, template, 1)
    Quota.objects.create(user=bob, instances=0)
    response = ask_one(bob, template)
    assert response.status_code == 409 and "quota" in response.json()["error"]
    assert WarmMachine.objects.get().status == WarmMachine.WARM and not Domain.objects.filter(owner=bob).exists()
    # Handed out, it counts like any clone: with room for one machine, the second request is refused.
    Quota.objects.filter(user=bob).update(instances=1)
    assert ask_one(bob, template).status_code == 201
    assert refill(template).state == Job.SUCCEEDED
    assert ask_one(bob, template).status_code == 409


def test_the_form_hands_one_out_and_the_list_shows_its_title(admin, bob, template):
    template.users.add(bob)
    fill(admin, template, 1)
    expires = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client_for(bob).post(f"/templates/{template.pk}/", {
        "count": 1, "name_pattern": f"{template.name}-lab-{{n}}", "mode": "linked", "start": "on",
        "expires_at": expires}, follow=True)
    page = response.content.decode()
    assert f"{template.name}-lab-1 is ready: a warm machine" in page
    domain = Domain.objects.get(owner=bob)
    assert response.redirect_chain[-1][0] == f"/domains/{domain.pk}/"
    listing = client_for(bob).get("/domains/").content.decode()
    assert f"{template.name}-lab-1</a>" in listing and domain.name in listing


def test_a_smaller_pool_removes_its_surplus(admin, template, test_conn):
    fill(admin, template, 2)
    names = list(WarmMachine.objects.values_list("domain__name", flat=True))
    response = client_for(admin).post(f"/templates/{template.pk}/edit/", {
        "name": template.name, "max_lifetime_days": 10, "warm_count": 1, "boot_marker": ""})
    assert response.status_code == 302
    assert WarmMachine.objects.count() == 1
    left = {d.name() for d in test_conn.listAllDomains(0)}
    assert len(left & set(names)) == 1


def test_a_refill_never_starts_a_machine_the_hosts_free_memory_cannot_hold(admin, template, test_conn, settings):
    free_mib = hostinfo.free_memory_mib(test_conn)
    template.memory_mib = free_mib + 1024  # within the budget, beyond the host's free memory
    template.save()
    settings.WEBVIRT_WARM_BUDGET_MIB = 4 * template.memory_mib
    warm.set_size(Actor(user=admin), template, 1)
    job = refill(template)
    assert job.state == Job.FAILED, job.log
    assert f"The host has {free_mib} MiB of memory free" in job.error
    assert f"needs {template.memory_mib} MiB" in job.error
    assert not WarmMachine.objects.exists()
    assert not [d for d in test_conn.listAllDomains(0) if d.name().startswith(f"{template.name}-warm")]


def test_machines_handed_out_while_a_refill_runs_are_made_up_by_the_next(admin, bob, template):
    template.users.add(bob)
    fill(admin, template, 2)
    assert ask_one(bob, template).status_code == 201  # starts a refill for one machine
    assert ask_one(bob, template).status_code == 201  # that refill is still queued: no second job
    assert Job.objects.filter(kind=warm.KIND, state=Job.QUEUED).count() == 1
    first = refill(template)
    assert len(first.params["names"]) == 1 and first.state == Job.SUCCEEDED
    second = Job.objects.get(kind=warm.KIND, state=Job.QUEUED)  # started by the first as it ended
    runner.execute(second.pk)
    assert warm.status(template).warm == 2
