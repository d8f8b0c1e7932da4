"""The catalog pages: making, registering, editing and deleting templates, and the clone form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from tests.catalog.conftest import clone, run
from tests.people import client_for
from webvirt.catalog.models import Quota, Template
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def form(template, **fields):  # type: ignore[no-untyped-def]
    tomorrow = timezone.localtime(timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    return {"count": 3, "name_pattern": f"{template.name}-{{n:02}}", "mode": "linked", "start": "on",
            "expires_at": tomorrow, **fields}


def test_an_administrator_makes_a_template_from_a_shut_off_domain_on_its_page(admin_client, template_source, bob,
                                                                              test_conn):
    group = Group.objects.create(name="teachers")
    page = admin_client.get(f"/domains/{template_source.pk}/").content.decode()
    assert f'href="/templates/from-domain/{template_source.pk}/"' in page
    response = admin_client.post(f"/templates/from-domain/{template_source.pk}/", {
        "name": "exam-server", "description": "The exam machine", "os": "Debian 12", "max_lifetime_days": 14,
        "users": [bob.pk], "groups": [group.pk]}, follow=True)
    template = Template.objects.get(name="exam-server")
    assert f"{template_source.name} is now the template exam-server." in response.content.decode()
    assert (template.os, template.max_lifetime_days, template.vcpus, template.memory_mib) == ("Debian 12", 14, 1, 128)
    assert list(template.users.all()) == [bob] and list(template.groups.all()) == [group]
    assert "<readonly/>" in test_conn.lookupByUUIDString(template_source.uuid).XMLDesc(0)
    page = admin_client.get(f"/domains/{template_source.pk}/").content.decode()
    assert ">template</span>" in page and 'data-action="start"' not in page and "Make template" not in page


def test_the_template_domain_cannot_be_started_from_its_page(admin_client, template):
    source = Domain.objects.get(uuid=template.source_uuid)
    response = admin_client.post(f"/domains/{source.pk}/start/", follow=True)
    assert "is a template: its disks are the read-only bases of its clones" in response.content.decode()
    source.refresh_from_db()
    assert source.state == "shutoff"


def test_making_a_template_of_a_running_domain_is_refused_on_the_form(admin_client, template_source, test_conn):
    test_conn.lookupByUUIDString(template_source.uuid).create()
    Domain.objects.filter(pk=template_source.pk).update(state="running")
    response = admin_client.post(f"/templates/from-domain/{template_source.pk}/", {"name": "t", "max_lifetime_days": 5})
    assert "shut it off before making a template of it" in response.content.decode()
    assert not Template.objects.exists()
    test_conn.lookupByUUIDString(template_source.uuid).destroy()


def test_an_administrator_registers_a_template_from_a_volume_in_a_pool(admin_client, test_host, base_volume):
    response = admin_client.post("/templates/register/", {
        "host": test_host.pk, "volume_path": base_volume.path(), "name": "from-image", "vcpus": 2,
        "memory_mib": 256, "network": "default", "max_lifetime_days": 7}, follow=True)
    assert "Template from-image is registered." in response.content.decode()
    template = Template.objects.get(name="from-image")
    assert (template.vcpus, template.memory_mib, template.network) == (2, 256, "default")
    assert template.disks[0]["path"] == base_volume.path() and template.disks[0]["format"] == "qcow2"
    response = admin_client.post("/templates/register/", {
        "host": test_host.pk, "volume_path": "/nowhere/disk.qcow2", "name": "nothing", "vcpus": 1,
        "memory_mib": 256, "max_lifetime_days": 7})
    assert "is not a volume in any storage pool" in response.content.decode()


def test_an_administrator_edits_a_templates_name_grants_and_lifetime(admin_client, template, dave):
    group = dave.groups.get()
    response = admin_client.post(f"/templates/{template.pk}/edit/", {
        "name": "renamed", "description": "New words", "os": "Other OS", "max_lifetime_days": 3,
        "groups": [group.pk]}, follow=True)
    assert "Template renamed is saved." in response.content.decode()
    template.refresh_from_db()
    assert (template.name, template.os, template.max_lifetime_days) == ("renamed", "Other OS", 3)
    assert list(template.groups.all()) == [group]
    assert "renamed" in client_for(dave).get("/templates/").content.decode()


def test_deleting_a_template_is_refused_while_linked_clones_use_it(admin_client, template, bob, test_conn):
    template.users.add(bob)
    run(clone(bob, template, count=1))
    confirmation = admin_client.get(f"/templates/{template.pk}/delete/").content
    assert b"1 linked clone</strong> still uses its disks" in confirmation
    page = admin_client.post(f"/templates/{template.pk}/delete/").content.decode()
    assert f"Linked clones still use this template&#x27;s disks ({template.name}-01). Delete them first" in page
    assert Template.objects.filter(pk=template.pk).exists()
    client_for(bob).post(f"/domains/{Domain.objects.get(owner=bob).pk}/remove/")
    response = admin_client.post(f"/templates/{template.pk}/delete/", follow=True)
    assert f"Template {template.name} is deleted." in response.content.decode()
    assert not Template.objects.exists()
    assert not Domain.objects.get(uuid=template.source_uuid).is_template


def test_template_admin_pages_are_404_for_everyone_else(template, bob, template_source):
    template.users.add(bob)
    html = client_for(bob)
    for url in (f"/templates/{template.pk}/edit/", f"/templates/{template.pk}/delete/", "/templates/register/",
                f"/templates/from-domain/{template_source.pk}/"):
        assert html.get(url).status_code == 404, url
    assert html.post(f"/templates/{template.pk}/delete/").status_code == 404
    assert Template.objects.filter(pk=template.pk).exists()


def test_the_catalog_lists_granted_templates_for_users_and_all_for_administrators(admin_client, template, bob,
                                                                                  dave):
    template.users.add(bob)
    page = admin_client.get("/templates/").content.decode()
    assert template.name in page and "Test OS" in page and "128 MiB" in page and ">bob</span>" in page
    assert "testhost" in page and "default-pool" in page
    assert template.name in client_for(bob).get("/templates/").content.decode()
    assert "No template has been shared with you yet." in client_for(dave).get("/templates/").content.decode()


def test_cloning_through_the_form_starts_a_job_and_shows_its_page(template, bob, test_conn):
    template.users.add(bob)
    html = client_for(bob)
    page = html.get(f"/templates/{template.pk}/").content.decode()
    assert f'value="{template.name}-{{n:02}}"' in page and 'type="datetime-local"' in page
    response = html.post(f"/templates/{template.pk}/", form(template))
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["names"] == [f"{template.name}-01", f"{template.name}-02", f"{template.name}-03"]
    from webvirt.jobs import runner

    assert runner.execute(job.pk) == Job.SUCCEEDED
    page = html.get(f"/jobs/{job.pk}/").content.decode()
    assert 'aria-valuenow="100"' in page and "3 of 3 clone(s) made, 3 running." in page
    assert all(test_conn.lookupByName(f"{template.name}-0{i}").isActive() for i in (1, 2, 3))


@pytest.mark.parametrize(("fields", "says"), [
    ({"count": 0}, "Ask for between 1 and 50 clones at a time."),
    ({"count": 10000}, "Ask for between 1 and 50 clones at a time."),
    ({"name_pattern": "exam"}, "The name pattern &#x27;exam&#x27; is not valid"),
    ({"name_pattern": "bad name {n}"}, "is not valid. Use letters, digits"),
    ({"expires_at": ""}, "Say when the clones expire"),
])
def test_the_clone_form_says_what_is_wrong_and_starts_nothing(template, bob, fields, says):
    template.users.add(bob)
    response = client_for(bob).post(f"/templates/{template.pk}/", form(template, **fields))
    assert response.status_code == 200 and says in response.content.decode()
    assert not Job.objects.exists()


def test_the_clone_form_numbers_on_after_names_taken_and_refuses_a_quota_exceeded(template, bob, make_test_domain,
                                                                                 test_host):
    from webvirt.domains.services import sync_host

    template.users.add(bob)
    make_test_domain(f"{template.name}-02")
    sync_host(test_host)
    html = client_for(bob)
    Quota.objects.create(user=bob, instances=2)
    page = html.post(f"/templates/{template.pk}/", form(template, name_pattern="other-{n}")).content.decode()
    assert "That needs 3 instances, but your quota has 2 left (of 2)." in page
    assert not Job.objects.exists()
    # -02 is taken: two clones become -03 and -04 rather than a clash.
    response = html.post(f"/templates/{template.pk}/", form(template, count=2))
    assert response.status_code == 302, response.content.decode()
    assert Job.objects.get().params["names"] == [f"{template.name}-03", f"{template.name}-04"]
