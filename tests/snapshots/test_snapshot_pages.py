"""The Snapshots tab of the domain page and the confirmation pages of its changes, as the domain's owner."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from tests.catalog.conftest import clone
from tests.catalog.conftest import run as run_clone
from tests.people import client_for
from tests.snapshots.conftest import run, snapshot_names, take, taken
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def tab(row: Domain) -> str:
    return f"/domains/{row.pk}/#snapshots"


def only_job(kind: str) -> Job:
    [job] = Job.objects.filter(kind=kind)
    return job


# The tab ----------------------------------------------------------------------------------------

def test_the_panel_shows_the_tree_with_the_current_snapshot_and_the_take_form(snap_domain, bob):
    row = snap_domain(owner=bob)
    taken(bob, row, "parent")
    taken(bob, row, "child")
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/").content.decode()
    assert page.index('data-snapshot="parent"') < page.index('data-snapshot="child"')
    assert '<tr data-snapshot="child" class="current">' in page
    assert 'style="--depth: 1"' in page  # the child, indented one step down the tree
    assert f'href="/domains/{row.pk}/snapshots/parent/revert/"' in page
    assert f'href="/domains/{row.pk}/snapshots/child/delete/"' in page
    assert f'action="/domains/{row.pk}/snapshots/take/"' in page and 'name="memory"' in page
    assert "Reset to template" not in page  # not a linked clone


def test_a_domain_without_snapshots_says_so_and_opens_the_take_form(snap_domain, bob):
    row = snap_domain(owner=bob)
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/").content.decode()
    assert "No snapshots yet." in page and '<details class="take" open>' in page


def test_a_stranger_gets_404_for_the_panel_and_every_page_of_it(snap_domain, bob, stranger):
    row = snap_domain(owner=bob)
    taken(bob, row, "private")
    client = client_for(stranger)
    for url in ("", "private/revert/", "private/delete/", "reset/"):
        assert client.get(f"/domains/{row.pk}/snapshots/{url}").status_code == 404, url
    assert client.post(f"/domains/{row.pk}/snapshots/take/", {"name": "x", "kind": "auto"}).status_code == 404
    assert not Job.objects.filter(user=stranger).exists()


# Taking -----------------------------------------------------------------------------------------

def test_the_take_form_starts_a_job_and_says_which_kind_and_why(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    response = client_for(bob).post(f"/domains/{row.pk}/snapshots/take/", {"name": "from-page", "kind": "auto"})
    assert response.status_code == 302 and response["Location"] == tab(row)
    job = only_job("snapshot_create")
    assert messages_of(response) == [f"Taking an internal snapshot of {row.name}, because every disk is qcow2 and "
                                     f"the firmware is BIOS (job #{job.pk})."]
    assert runner.execute(job.pk) == Job.SUCCEEDED
    assert snapshot_names(libvirt_domain(row)) == ["from-page"]


def test_an_unusable_name_on_the_take_form_is_said_in_a_sentence_not_a_server_error(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).post(f"/domains/{row.pk}/snapshots/take/", {"name": "no spaces", "kind": "auto"})
    assert response.status_code == 302 and response["Location"] == tab(row)
    assert messages_of(response) == ["'no spaces' is not a usable snapshot name: use up to 63 letters, digits, '.', "
                                     "'_' and '-', starting with a letter or digit."]
    assert not Job.objects.exists()


def test_a_refusal_of_the_plan_on_the_take_form_is_said_in_a_sentence(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).post(f"/domains/{row.pk}/snapshots/take/",
                                    {"name": "mem", "kind": "auto", "memory": "on"})
    assert response.status_code == 302 and response["Location"] == tab(row)
    [said] = messages_of(response)
    assert "there is no memory to include" in said
    assert not Job.objects.exists()


def test_the_take_form_is_only_posted(snap_domain, bob):
    assert client_for(bob).get(f"/domains/{snap_domain(owner=bob).pk}/snapshots/take/").status_code == 405


# Reverting --------------------------------------------------------------------------------------

def test_the_revert_page_says_what_is_lost_and_posting_it_reverts(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    taken(bob, row, "good")
    libvirt_domain(row).create()
    Domain.objects.filter(pk=row.pk).update(state="running")  # the page reads the state from webvirt's cache
    client = client_for(bob)
    page = client.get(f"/domains/{row.pk}/snapshots/good/revert/").content.decode()
    assert f"Everything written to the disks of <strong>{row.name}</strong> since <strong>good</strong>" in page
    assert "It comes back shut off." in page  # taken without memory

    response = client.post(f"/domains/{row.pk}/snapshots/good/revert/")
    assert response.status_code == 302 and response["Location"] == tab(row)
    job = only_job("snapshot_revert")
    assert messages_of(response) == [f"Reverting {row.name} to good (job #{job.pk})."]
    assert runner.execute(job.pk) == Job.SUCCEEDED
    assert not libvirt_domain(row).isActive()


def test_the_revert_page_of_a_snapshot_that_is_gone_sends_back_to_the_tab(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).get(f"/domains/{row.pk}/snapshots/gone/revert/")
    assert response.status_code == 302 and response["Location"] == tab(row)
    assert messages_of(response) == [f"{row.name} has no snapshot named 'gone' any more."]


def test_posting_a_revert_to_a_snapshot_that_is_gone_says_so(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).post(f"/domains/{row.pk}/snapshots/gone/revert/")
    assert f"{row.name} has no snapshot named 'gone'." in messages_of(response)
    assert not Job.objects.exists()


# Deleting ---------------------------------------------------------------------------------------

def test_the_delete_page_names_the_snapshots_below_and_offers_to_delete_them_too(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    for name in ("top", "middle", "bottom"):
        taken(bob, row, name)
    client = client_for(bob)
    page = client.get(f"/domains/{row.pk}/snapshots/middle/delete/").content.decode()
    assert "You can no longer go back to <strong>middle</strong>" in page
    assert "below it in the tree: bottom." in page and 'name="children"' in page

    response = client.post(f"/domains/{row.pk}/snapshots/middle/delete/", {"children": "on"})
    assert response.status_code == 302 and response["Location"] == tab(row)
    job = only_job("snapshot_delete")
    assert job.params["children"] is True
    assert runner.execute(job.pk) == Job.SUCCEEDED
    assert snapshot_names(libvirt_domain(row)) == ["top"]


def test_the_delete_page_of_a_leaf_has_no_box_and_deletes_it_alone(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    taken(bob, row, "first")
    taken(bob, row, "last")
    client = client_for(bob)
    page = client.get(f"/domains/{row.pk}/snapshots/last/delete/").content.decode()
    assert 'name="children"' not in page and "below it in the tree" not in page
    response = client.post(f"/domains/{row.pk}/snapshots/last/delete/")
    assert messages_of(response) == [f"Deleting snapshot last of {row.name} (job #{only_job('snapshot_delete').pk})."]
    assert runner.execute(only_job("snapshot_delete").pk) == Job.SUCCEEDED
    assert snapshot_names(libvirt_domain(row)) == ["first"]


# Resetting to the template ----------------------------------------------------------------------

def test_the_reset_page_of_a_linked_clone_says_what_is_lost_and_posting_it_resets(template, clone_snapshots, bob,
                                                                                  test_conn):
    template.users.add(bob)
    assert run_clone(clone(bob, template)).state == Job.SUCCEEDED
    row = Domain.objects.get(template=template, owner=bob)
    client = client_for(bob)
    assert "Reset to template…" in client.get(f"/domains/{row.pk}/snapshots/").content.decode()
    page = client.get(f"/domains/{row.pk}/snapshots/reset/").content.decode()
    assert f"Reset {row.name} to {template.name}?" in page
    assert "put back as it was when it was cloned: everything written to its disks since is lost" in page
    assert f"The template {template.name} is not touched." in page

    response = client.post(f"/domains/{row.pk}/snapshots/reset/")
    assert response.status_code == 302 and response["Location"] == tab(row)
    job = only_job("snapshot_reset")
    assert messages_of(response) == [f"Resetting {row.name} to its template (job #{job.pk})."]
    assert runner.execute(job.pk) == Job.SUCCEEDED, Job.objects.get(pk=job.pk).error


def test_the_reset_page_names_the_snapshots_that_go_with_it(template, clone_snapshots, bob):
    template.users.add(bob)
    assert run_clone(clone(bob, template)).state == Job.SUCCEEDED
    row = Domain.objects.get(template=template, owner=bob)
    taken(bob, row, "alpha")
    taken(bob, row, "beta")
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/reset/").content.decode()
    assert "2 snapshots are deleted too: alpha, beta." in page


def test_resetting_a_domain_that_is_no_linked_clone_is_refused_with_a_sentence(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).post(f"/domains/{row.pk}/snapshots/reset/")
    assert f"{row.name} is not a linked clone of a template, so there is nothing to reset it to." in messages_of(
        response)
    assert not Job.objects.exists()


def test_the_reset_page_of_a_domain_that_is_no_linked_clone_sends_back_with_the_reason(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = client_for(bob).get(f"/domains/{row.pk}/snapshots/reset/")
    assert response.status_code == 302 and response["Location"] == tab(row)
    assert messages_of(response) == [f"{row.name} is not a linked clone of a template, so there is nothing to "
                                     "reset it to."]


def test_a_failed_snapshot_job_stays_in_the_tab_with_its_reason_until_one_succeeds(snap_domain, bob):
    # The test driver refuses external (disk-only) snapshots: the job fails in the worker, not in the request.
    row = snap_domain(owner=bob)
    failed = run(take(bob, row, name="outside", kind="external"))
    assert failed.state == Job.FAILED
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/").content.decode()
    assert f'data-job-bar="{failed.pk}"' in page and "nsupported flags" in page
    taken(bob, row, "inside")
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/").content.decode()
    assert f'data-job-bar="{failed.pk}"' not in page  # a later success puts the failure behind it


def test_a_size_that_cannot_be_known_shows_as_unknown_not_0_bytes(snap_domain, bob):
    row = snap_domain(owner=bob)
    taken(bob, row, "first")
    page = client_for(bob).get(f"/domains/{row.pk}/snapshots/").content.decode()
    assert ">unknown</span>" in page
    assert "0\xa0bytes" not in page and "0 bytes" not in page
