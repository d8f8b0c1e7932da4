"""Templates and cloning through the API, on the test driver (jobs run in this process)."""

from __future__ import annotations

import pytest

from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def make_template(api, source, name="exam-server"):  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/templates/", {"domain": source.pk, "name": name}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_shut_off_domain_becomes_a_template_that_cannot_start(api, template_source, test_conn):
    template = make_template(api, template_source)
    assert template["vcpus"] == 1 and template["memory_mib"] == 128
    assert "<readonly/>" in test_conn.lookupByUUIDString(template_source.uuid).XMLDesc(0)
    response = api.post(f"/api/v1/domains/{template_source.pk}/start/")
    assert response.status_code == 409 and "template" in response.json()["error"]


def test_it_clones_a_template_three_times_with_new_names_uuids_and_disks(api, template_source, test_conn,
                                                                          cleanup_clones):
    cleanup_clones.append("exam-")
    template = make_template(api, template_source)
    response = api.post(f"/api/v1/templates/{template['id']}/clone/",
                        {"count": 3, "name_pattern": "exam-{n:02}", "mode": "linked", "start": True}, format="json")
    assert response.status_code == 202, response.json()
    state = runner.execute(response.json()["job"])
    assert state == Job.SUCCEEDED, Job.objects.get().error
    clones = Domain.objects.filter(name__startswith="exam-").order_by("name")
    assert [c.name for c in clones] == ["exam-01", "exam-02", "exam-03"]
    assert all(c.state == "running" and c.linked and c.owner_id for c in clones)
    xmls = [test_conn.lookupByName(c.name).XMLDesc(0) for c in clones]
    assert len({c.uuid for c in clones} | {template_source.uuid}) == 4
    assert all("52:54:00:aa:bb:cc" not in x and "<readonly/>" not in x for x in xmls)
    assert "/default-pool/exam-02-vda.qcow2" in xmls[1]


def test_it_refuses_a_pattern_without_a_number_and_a_count_of_zero(api, template_source):
    template = make_template(api, template_source)
    url = f"/api/v1/templates/{template['id']}/clone/"
    assert api.post(url, {"count": 3, "name_pattern": "exam"}, format="json").status_code == 400
    assert api.post(url, {"count": 0, "name_pattern": "e-{n}"}, format="json").status_code == 400
    assert api.post(url, {"count": 10000, "name_pattern": "e-{n}"}, format="json").status_code == 400
    assert not Job.objects.exists()


def test_numbering_goes_on_after_names_taken_unless_a_first_number_is_given(api, template_source, test_host,
                                                                            make_test_domain):
    from webvirt.domains.services import sync_host

    template = make_template(api, template_source)
    url = f"/api/v1/templates/{template['id']}/clone/"
    for n in (1, 2, 4):
        make_test_domain(f"batch-{n:02}")
    sync_host(test_host)
    response = api.post(url, {"count": 2, "name_pattern": "batch-{n:02}", "start": False}, format="json")
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["job"]).params["names"] == ["batch-05", "batch-06"]
    clash = api.post(url, {"count": 2, "name_pattern": "batch-{n:02}", "first": 1}, format="json")
    assert clash.status_code == 409
    assert clash.json()["error"] == ("batch-01, batch-02 already exist(s) on testhost. Choose another name pattern "
                                     "or first number.")
    assert api.post(url, {"count": 1, "name_pattern": "batch-{n:02}", "first": 3, "start": False},
                    format="json").status_code == 202


def test_an_owner_extends_and_removes_a_clone_through_the_api(api, template_source, cleanup_clones):
    from datetime import timedelta

    from django.utils import timezone

    cleanup_clones.append("own-")
    template = make_template(api, template_source, name="own-template")
    job = api.post(f"/api/v1/templates/{template['id']}/clone/",
                   {"count": 1, "name_pattern": "own-{n}", "start": False}, format="json").json()["job"]
    assert runner.execute(job) == Job.SUCCEEDED
    clone = Domain.objects.get(name="own-1")
    until = timezone.now() + timedelta(days=3)
    response = api.post(f"/api/v1/domains/{clone.pk}/expiry/", {"expires_at": until.isoformat()}, format="json")
    assert response.status_code == 200 and response.json()["expires_at"]
    too_late = timezone.now() + timedelta(days=400)
    assert api.post(f"/api/v1/domains/{clone.pk}/expiry/", {"expires_at": too_late.isoformat()},
                    format="json").status_code == 200  # admins may; owners are limited (tested with users)
    assert api.post(f"/api/v1/domains/{clone.pk}/remove/").status_code == 200
    assert not Domain.objects.filter(name="own-1").exists()
