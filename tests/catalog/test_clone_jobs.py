"""The clone job on the test driver: partial failure, cancelling, retrying, and a worker that died."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest
from django.utils import timezone

from tests.catalog.conftest import clone, domain_names, pool_volumes, run
from tests.conftest import domain_xml
from tests.people import api_for
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_name_taken_at_libvirt_after_queueing_fails_that_clone_and_keeps_the_others(template, bob, test_conn):
    template.users.add(bob)
    response = clone(bob, template, count=3)
    assert response.status_code == 202
    # Someone defines a domain with the second clone's name before the job runs.
    test_conn.defineXML(domain_xml(f"{template.name}-02"))
    job = run(response)
    assert job.state == Job.SUCCEEDED
    assert job.result["succeeded"] == 2 and job.result["failed"] == 1
    assert f"{template.name}-02" in job.result["errors"] and f"{template.name}-02" in job.error
    assert job.message == "2 of 3 clone(s) made; 1 failed."
    assert sorted(Domain.objects.filter(template=template).values_list("name", flat=True)) == [
        f"{template.name}-01", f"{template.name}-03"]
    assert pool_volumes(test_conn, template.name) == [f"{template.name}-01-vda.qcow2", f"{template.name}-03-vda.qcow2"]
    assert Job.objects.get(pk=job.pk).created_objects == []


def test_a_job_cancelled_before_it_runs_creates_nothing(template, bob, test_conn):
    template.users.add(bob)
    response = clone(bob, template, count=2)
    Job.objects.filter(pk=response.json()["job"]).update(cancel_requested=True)
    assert runner.execute(response.json()["job"]) is None
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == Job.CANCELLED and job.message == "Cancelled before it started."
    assert domain_names(test_conn, template.name) == [] and pool_volumes(test_conn, template.name) == []


def test_a_job_cancelled_while_it_runs_removes_what_it_had_created(template, bob, test_conn, monkeypatch):
    template.users.add(bob)
    response = clone(bob, template, count=6, start=True)
    job_id = response.json()["job"]
    log = runner.JobContext.log

    def log_and_cancel(ctx, line):  # type: ignore[no-untyped-def]
        log(ctx, line)
        if line.startswith("created"):  # The first clone exists: the user presses Cancel now.
            api_for(bob).post(f"/api/v1/jobs/{job_id}/cancel/")

    monkeypatch.setattr(runner.JobContext, "log", log_and_cancel)
    assert runner.execute(job_id) == Job.CANCELLED
    job = Job.objects.get(pk=job_id)
    assert job.cancel_requested and job.message == "Cancelled; what it had created was removed."
    assert domain_names(test_conn, template.name) == []
    assert pool_volumes(test_conn, template.name) == []
    assert not Domain.objects.filter(template=template).exists()
    assert job.reserved == {}


def test_a_cancelled_job_runs_again_as_a_new_job(template, bob, test_conn):
    template.users.add(bob)
    response = clone(bob, template, count=2)
    api = api_for(bob)
    cancelled = api.post(f"/api/v1/jobs/{response.json()['job']}/cancel/").json()
    assert cancelled["state"] == "cancelled"
    retried = api.post(f"/api/v1/jobs/{cancelled['id']}/retry/")
    assert retried.status_code == 201 and retried.json()["id"] != cancelled["id"]
    assert runner.execute(retried.json()["id"]) == Job.SUCCEEDED
    assert domain_names(test_conn, template.name) == [f"{template.name}-01", f"{template.name}-02"]


def test_a_running_job_whose_worker_died_is_failed_and_its_objects_removed(test_host, test_conn, bob):
    name = f"orphan-{uuidlib.uuid4().hex[:6]}"
    pool = test_conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML(f"<volume><name>{name}.qcow2</name><capacity unit='MiB'>8</capacity>"
                         "<target><format type='qcow2'/></target></volume>", 0)
    dom = test_conn.defineXML(domain_xml(name))
    old = timezone.now() - timezone.timedelta(minutes=5)
    job = Job.objects.create(kind="clone", title="Half done", user=bob, host=test_host, state=Job.RUNNING,
                             started=old, heartbeat=old, reserved={"instances": 1}, created_objects=[
                                 {"kind": "volume", "host": test_host.pk, "key": vol.path()},
                                 {"kind": "domain", "host": test_host.pk, "key": dom.UUIDString()}])
    fresh = Job.objects.create(kind="clone", title="Alive", user=bob, state=Job.RUNNING, heartbeat=timezone.now())
    assert runner.reap_stale() == [job.pk]
    job.refresh_from_db()
    assert job.state == Job.FAILED and "worker running this job stopped" in job.error
    assert job.reserved == {} and job.created_objects == []
    with pytest.raises(libvirt.libvirtError):
        test_conn.lookupByName(name)
    assert pool_volumes(test_conn, name) == []
    assert Job.objects.get(pk=fresh.pk).state == Job.RUNNING
