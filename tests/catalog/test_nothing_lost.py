"""Jobs and deletions never remove what is not theirs; self-service rules hold on every path.

Each test here reproduces a hole that was open: a clone job's undo deleting a volume it found under a
name it wanted, an owner deleting a template's disks or leaving disks behind, clones that never
expire, a name pattern with all of str.format's power, and linked clones that cost no disk quota.
"""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone

from tests.catalog.conftest import clone, run
from tests.people import api_for, client_for
from webvirt.catalog.models import Quota
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def make_volume(test_conn, name: str) -> libvirt.virStorageVol:  # type: ignore[no-untyped-def]
    pool = test_conn.storagePoolLookupByName("default-pool")
    return pool.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>8</capacity>"
                          "<target><format type='qcow2'/></target></volume>", 0)


def volume_exists(test_conn, name: str) -> bool:  # type: ignore[no-untyped-def]
    pool = test_conn.storagePoolLookupByName("default-pool")
    pool.refresh(0)
    return name in pool.listVolumes()


# 1. A job's undo removes only what the job made -----------------------------------------------------

def test_a_clone_request_over_an_existing_volume_is_refused_before_any_job(template, bob, test_conn):
    template.users.add(bob)
    victim = make_volume(test_conn, f"{template.name}-x01-vda.qcow2")
    response = clone(bob, template, pattern=f"{template.name}-x{{n:02}}", first=1)
    assert response.status_code == 409, response.json()
    assert f"default-pool/{template.name}-x01-vda.qcow2 already exist" in response.json()["error"]
    assert not Job.objects.exists() and volume_exists(test_conn, victim.name())


def test_a_clone_job_that_meets_a_volume_made_after_its_request_leaves_it_alone(template, bob, test_conn):
    """Two people's queued jobs picking the same names: the second one fails, and deletes nothing."""
    template.users.add(bob)
    response = clone(bob, template, count=2, pattern=f"{template.name}-y{{n:02}}")
    assert response.status_code == 202
    victim = make_volume(test_conn, f"{template.name}-y02-vda.qcow2")  # someone else's, made meanwhile
    job = run(response)
    assert "already exists on the host; this job did not make it" in job.result["errors"][f"{template.name}-y02"]
    assert volume_exists(test_conn, victim.name()), "the job's undo deleted a volume it did not make"
    assert volume_exists(test_conn, f"{template.name}-y01-vda.qcow2")  # the clone that worked stays
    assert job.created_objects == []


def test_a_volume_copy_job_leaves_a_volume_made_after_its_request_alone(admin, test_conn, test_host, cleanup_clones):
    from tests.storage.conftest import DEFAULT_POOL

    pool = test_conn.storagePoolLookupByName(DEFAULT_POOL)
    cleanup_clones.append("wvt-lost-")
    source = make_volume(test_conn, "wvt-lost-source.qcow2")
    vid = f"{test_host.pk}:{pool.UUIDString()}:{source.name()}"
    response = api_for(admin).post(f"/api/v1/volumes/{vid}/clone/", {"name": "wvt-lost-copy.qcow2"}, format="json")
    assert response.status_code == 202, response.json()
    make_volume(test_conn, "wvt-lost-copy.qcow2")  # made by someone else before the job ran
    assert runner.execute(response.json()["job"]) == Job.FAILED
    assert "did not make it" in Job.objects.get().error
    assert volume_exists(test_conn, "wvt-lost-copy.qcow2")


def test_the_dead_worker_reaper_removes_only_what_was_tracked(template, bob, test_conn):
    """A job tracks a name only after finding nothing under it, so a reaped job's undo cannot reach
    a volume that was there before it."""
    template.users.add(bob)
    job = Job.objects.get(pk=clone(bob, template, pattern=f"{template.name}-z{{n:02}}").json()["job"])
    victim = make_volume(test_conn, f"{template.name}-z01-vda.qcow2")
    ctx = runner.JobContext(job)
    with pytest.raises(runner.JobError):
        with ctx.creating("volume", template.host.pk, victim.path()):
            pytest.fail("the body must not run over an existing object")
    Job.objects.filter(pk=job.pk).update(state=Job.RUNNING, heartbeat=timezone.now() - timedelta(minutes=5))
    assert runner.reap_stale() == [job.pk]
    assert volume_exists(test_conn, victim.name())


# 2. A template's domain and disks stay while the template does -------------------------------------

def test_making_a_template_clears_its_owner(admin, template_source, bob):
    from webvirt.accounts.policy import Actor
    from webvirt.catalog import services

    Domain.objects.filter(pk=template_source.pk).update(owner=bob)
    services.make_template(Actor(user=admin), template_source, services.TemplateData(name="owned-tpl"))
    assert Domain.objects.get(pk=template_source.pk).owner is None


def test_a_templates_domain_cannot_be_undefined_with_its_disks(admin, template, template_source, test_conn):
    response = api_for(admin).delete(f"/api/v1/domains/{template_source.pk}/?delete_volumes=true")
    assert response.status_code == 409 and "is a template" in response.json()["error"]
    assert volume_exists(test_conn, template.disks[0]["path"].rsplit("/", 1)[1])
    assert test_conn.lookupByUUIDString(template_source.uuid)


# 3. Owners remove clones whole --------------------------------------------------------------------

def test_an_owner_cannot_undefine_a_clone_and_keep_its_disks(template, bob, test_conn):
    template.users.add(bob)
    run(clone(bob, template, pattern=f"{template.name}-k{{n:02}}"))
    mine = Domain.objects.get(owner=bob)
    response = api_for(bob).delete(f"/api/v1/domains/{mine.pk}/")
    assert response.status_code == 403 and "keep its disks" in response.json()["error"]
    assert test_conn.lookupByUUIDString(mine.uuid) and volume_exists(test_conn, f"{mine.name}-vda.qcow2")
    whole = api_for(bob).delete(f"/api/v1/domains/{mine.pk}/?delete_volumes=true")
    assert whole.status_code in (200, 204), whole.content
    assert not volume_exists(test_conn, f"{mine.name}-vda.qcow2")


# 4. Clones of non-administrators always expire ------------------------------------------------------

def test_a_non_administrator_must_give_an_expiry_on_the_api(template, bob):
    template.users.add(bob)
    for body in ({"expires_at": None}, {}):
        response = api_for(bob).post(f"/api/v1/templates/{template.pk}/clone/",
                                     {"count": 1, "name_pattern": "e-{n}", "start": False, **body}, format="json")
        assert response.status_code == 400 and "Say when the clones expire" in response.json()["error"]
    assert not Job.objects.exists()


def test_an_administrator_may_still_make_clones_that_never_expire(template, admin):
    response = clone(admin, template, pattern=f"{template.name}-a{{n}}", expires_at=None)
    assert response.status_code == 202 and Job.objects.get().params["expires_at"] is None


def test_the_clone_form_defaults_to_the_longest_life_and_requires_it(template, bob):
    template.users.add(bob)
    page = client_for(bob).get(f"/templates/{template.pk}/").content.decode()
    latest = timezone.localtime(timezone.now() + timedelta(days=template.max_lifetime_days))
    assert f'value="{latest:%Y-%m-%dT%H}' in page and "Empty: never" not in page


# 5. The name pattern is a small grammar -------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "extra", "says"), [
    ("x-{n.real}", {}, "is not valid"),
    ("x-{n:20000000}", {}, "is not valid"),
    ("x-{n:07}", {}, "is not valid"),
    ("x-{n}-{n}", {}, "is not valid"),
    ("{n:c}", {"first": 109}, "is not valid"),
    ("x" * 60 + "-{n:04}", {}, "at most 63 are allowed"),
    ("x-{n}", {"first": 10**9}, "less than or equal to 999999"),
    ("-{n}", {}, "starts with a letter or a digit"),
])
def test_bad_name_patterns_answer_a_short_400(template, admin, pattern, extra, says):
    response = clone(admin, template, count=50, pattern=pattern, **extra)
    assert response.status_code == 400, response.content
    assert says in response.json()["error"] and len(response.content) < 600
    assert not Job.objects.exists()


def test_a_huge_pattern_is_refused_without_being_sent_back(template, admin):
    response = clone(admin, template, pattern="{n}" + "x" * 100_000)
    assert response.status_code == 400 and len(response.content) < 600


def test_errors_quote_at_most_80_characters_of_input():
    from webvirt.virt import clone as virt_clone
    from webvirt.virt.errors import VirtError

    with pytest.raises(VirtError) as refused:
        virt_clone.clone_names("{" * 500, 1)
    assert "{" * 80 + "…'" in refused.value.message and "{" * 81 not in refused.value.message


def test_good_patterns_make_the_names_they_say(template, admin):
    response = clone(admin, template, count=2, pattern=f"{template.name}-{{n:03d}}.lab", first=9)
    assert Job.objects.get(pk=response.json()["job"]).params["names"] == [
        f"{template.name}-009.lab", f"{template.name}-010.lab"]


# 6. Linked clones count at their virtual size against the disk quota ---------------------------------

def test_linked_clones_count_their_virtual_size_against_the_disk_quota(template, bob):
    template.users.add(bob)
    Quota.objects.create(user=bob, disk_gib=0)
    refused = clone(bob, template, count=2)
    assert refused.status_code == 409 and "GiB of disk" in refused.json()["error"]
    Quota.objects.filter(user=bob).update(disk_gib=1)
    job = run(clone(bob, template, count=2, pattern=f"{template.name}-q{{n}}"))
    assert job.reserved == {} and Domain.objects.filter(owner=bob).count() == 2
    assert all(d.disk_gib == template.disk_gib for d in Domain.objects.filter(owner=bob))


def test_a_registered_templates_base_volume_cannot_be_deleted(admin, template, test_conn, test_host):
    """Even with no domain using it, a base volume stays while its template does (volume and pool delete)."""
    pool = test_conn.storagePoolLookupByName("default-pool")
    base = template.disks[0]["path"].rsplit("/", 1)[1]
    api = api_for(admin)
    response = api.delete(f"/api/v1/volumes/{test_host.pk}:{pool.UUIDString()}:{base}/")
    assert response.status_code == 409, response.json()
    assert f"is a base disk of template {template.name}" in response.json()["error"]
    response = api.delete(f"/api/v1/pools/{test_host.pk}:{pool.UUIDString()}/?delete_volumes=true")
    assert response.status_code == 409 and volume_exists(test_conn, base) and pool.isActive()
