"""Who may see and clone a template, and what owners may do with their clones (test driver, jobs inline)."""

from __future__ import annotations

import pytest

from tests.catalog.conftest import clone, domain_names, pool_volumes, run
from tests.people import api_for, client_for
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stranger_gets_404_for_the_template_and_its_clone_endpoint_and_sees_no_domains(template, stranger):
    api = api_for(stranger)
    assert api.get(f"/api/v1/templates/{template.pk}/").status_code == 404
    assert api.get("/api/v1/templates/").json()["results"] == []
    response = clone(stranger, template)
    assert response.status_code == 404 and response.json()["error"] == "Not found."
    assert api.get("/api/v1/domains/").json()["results"] == []
    html = client_for(stranger)
    assert html.get(f"/templates/{template.pk}/").status_code == 404
    assert html.post(f"/templates/{template.pk}/", {"count": 1, "name_pattern": "x-{n}", "mode": "linked"}
                     ).status_code == 404
    assert template.name not in html.get("/templates/").content.decode()
    assert b"You have no machines yet" in html.get("/domains/").content
    assert not Job.objects.exists()


def test_a_user_granted_the_template_by_name_clones_it_and_owns_the_clones(template, bob, test_conn):
    template.users.add(bob)
    job = run(clone(bob, template, count=2))
    assert job.state == Job.SUCCEEDED and job.user == bob
    clones = Domain.objects.filter(template=template).order_by("name")
    assert [c.name for c in clones] == [f"{template.name}-01", f"{template.name}-02"]
    assert all(c.owner == bob for c in clones)
    listed = [d["name"] for d in api_for(bob).get("/api/v1/domains/").json()["results"]]
    assert listed == [c.name for c in clones]


def test_a_user_granted_the_template_through_a_group_clones_it(template, dave):
    template.groups.add(dave.groups.get())
    assert [t["name"] for t in api_for(dave).get("/api/v1/templates/").json()["results"]] == [template.name]
    job = run(clone(dave, template))
    assert job.state == Job.SUCCEEDED
    assert Domain.objects.get(template=template).owner == dave


def test_owners_start_and_stop_their_own_clones_and_not_anyone_elses(template, bob, dave, test_conn):
    template.users.add(bob, dave)
    run(clone(bob, template, pattern=f"{template.name}-bob-{{n}}"))
    run(clone(dave, template, pattern=f"{template.name}-dave-{{n}}"))
    mine = Domain.objects.get(owner=bob)
    theirs = Domain.objects.get(owner=dave)
    api = api_for(bob)
    assert api.post(f"/api/v1/domains/{mine.pk}/start/").json()["state"] == "running"
    assert api.post(f"/api/v1/domains/{mine.pk}/destroy/").json()["state"] == "shutoff"
    assert api.post(f"/api/v1/domains/{theirs.pk}/start/").status_code == 404
    assert client_for(bob).post(f"/domains/{theirs.pk}/start/").status_code == 404
    assert not test_conn.lookupByName(theirs.name).isActive()


def test_an_owner_deletes_their_clone_and_its_disk_through_the_confirmation_page(template, bob, dave, test_conn):
    template.users.add(bob, dave)
    run(clone(bob, template, start=True))
    run(clone(dave, template, pattern=f"{template.name}-d{{n}}"))
    mine, theirs = Domain.objects.get(owner=bob), Domain.objects.get(owner=dave)
    html = client_for(bob)
    assert b"Delete " + mine.name.encode() in html.get(f"/domains/{mine.pk}/remove/").content
    assert html.get(f"/domains/{theirs.pk}/remove/").status_code == 404
    assert html.post(f"/domains/{theirs.pk}/remove/").status_code == 404
    response = html.post(f"/domains/{mine.pk}/remove/", follow=True)
    assert f"{mine.name} is deleted, with 1 disk volume(s)." in response.content.decode()
    assert domain_names(test_conn, template.name) == [theirs.name]
    assert pool_volumes(test_conn, template.name) == [f"{theirs.name}-vda.qcow2"]
    assert not Domain.objects.filter(pk=mine.pk).exists()


def test_an_owner_cannot_edit_the_xml_of_their_clone(template, bob, test_conn):
    template.users.add(bob)
    run(clone(bob, template))
    mine = Domain.objects.get(owner=bob)
    before = test_conn.lookupByName(mine.name).XMLDesc(0)
    response = api_for(bob).put(f"/api/v1/domains/{mine.pk}/xml/", {"xml": before.replace("128", "64")},
                                format="json")
    assert response.status_code == 403
    html = client_for(bob)
    assert html.get(f"/domains/{mine.pk}/xml/").status_code == 403
    assert html.post(f"/domains/{mine.pk}/xml/", {"xml": before}).status_code == 403
    assert test_conn.lookupByName(mine.name).XMLDesc(0) == before


def test_an_owner_sees_no_admin_buttons_or_host_links_on_their_domain_page(template, bob):
    template.users.add(bob)
    run(clone(bob, template))
    mine = Domain.objects.get(owner=bob)
    page = client_for(bob).get(f"/domains/{mine.pk}/").content.decode()
    assert "Delete…" in page and "linked clone" in page and f"/templates/{template.pk}/" in page
    for admin_only in ("Edit XML", "Undefine…", "Make template", "/hosts/"):
        assert admin_only not in page, admin_only
