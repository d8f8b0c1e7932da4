"""Snapshots through the API on the test driver, as an owner and an administrator (jobs run in this process)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tests.catalog.conftest import clone
from tests.catalog.conftest import run as run_clone
from tests.people import api_for
from tests.snapshots.conftest import EFI_FIRMWARE, run, snapshot_names, take, taken
from webvirt.accounts.policy import may_receive
from webvirt.catalog.models import Quota
from webvirt.domains.models import Domain
from webvirt.events.publish import GROUP, snapshots_message
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def listing(user, row) -> list[dict]:  # type: ignore[no-untyped-def]
    response = api_for(user).get(f"/api/v1/domains/{row.pk}/snapshots/")
    assert response.status_code == 200, response.json()
    return response.json()


def revert(user, row, name):  # type: ignore[no-untyped-def]
    return api_for(user).post(f"/api/v1/domains/{row.pk}/snapshots/{name}/revert/")


def delete(user, row, name, children=False):  # type: ignore[no-untyped-def]
    query = "?children=true" if children else ""
    return api_for(user).delete(f"/api/v1/domains/{row.pk}/snapshots/{name}/{query}")


# Taking and listing -----------------------------------------------------------------------------

def test_an_owner_snapshots_a_shut_off_qcow2_domain_and_webvirt_says_it_is_internal_and_why(snap_domain, bob,
                                                                                           libvirt_domain):
    row = snap_domain(owner=bob)
    response = take(bob, row, name="before-update", description="Before the update")
    assert response.status_code == 202, response.json()
    assert response.json()["kind"] == "internal"
    assert response.json()["reason"] == "every disk is qcow2 and the firmware is BIOS"
    assert run(response).state == Job.SUCCEEDED
    assert snapshot_names(libvirt_domain(row)) == ["before-update"]
    [only] = listing(bob, row)
    assert (only["name"], only["description"], only["kind"], only["memory"], only["state"]) == (
        "before-update", "Before the update", "internal", False, "shutoff")
    assert only["current"] is True and only["parent"] is None and only["depth"] == 0


def test_a_running_domain_is_snapshotted_with_its_memory_and_keeps_running(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob, start=True)
    response = take(bob, row, name="live", memory=True)
    assert response.json()["kind"] == "internal", response.json()
    job = run(response)
    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["message"].startswith(f"Took internal snapshot live of {row.name}")
    [only] = listing(bob, row)
    assert (only["memory"], only["state"], only["current"]) == (True, "running", True)
    assert libvirt_domain(row).isActive()


def test_a_snapshot_without_a_name_is_named_after_the_date_and_time(snap_domain, admin):
    row = snap_domain()
    job = run(take(admin, row))
    assert job.state == Job.SUCCEEDED, job.error
    [only] = listing(admin, row)
    assert only["name"] == job.params["name"]
    assert only["name"][:2] == "20" and len(only["name"]) == len("2026-12-02_11.30.54")


def test_the_list_is_a_tree_with_the_current_snapshot_marked(snap_domain, admin):
    row = snap_domain()
    for name in ("base", "first", "second"):
        taken(admin, row, name)
    # Back to base, then another branch grows from it.
    assert run(revert(admin, row, "base")).state == Job.SUCCEEDED
    taken(admin, row, "branch")
    tree = [(s["name"], s["parent"], s["depth"], s["current"]) for s in listing(admin, row)]
    assert tree[0] == ("base", None, 0, False)
    assert sorted(tree[1:]) == [("branch", "base", 1, True), ("first", "base", 1, False),
                                ("second", "first", 2, False)]
    # Each child right below its parent.
    names = [t[0] for t in tree]
    assert names.index("second") == names.index("first") + 1


# Names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["has space", "-dash-first", "semi;colon", "../up"])
def test_an_unusable_name_is_refused_with_a_sentence(snap_domain, bob, name):
    row = snap_domain(owner=bob)
    response = take(bob, row, name=name)
    assert response.status_code == 400
    assert "is not a usable snapshot name: use up to 63 letters, digits" in response.json()["error"]
    assert not Job.objects.exists()


def test_a_name_already_taken_is_a_conflict(snap_domain, bob):
    row = snap_domain(owner=bob)
    taken(bob, row, "once")
    response = take(bob, row, name="once")
    assert response.status_code == 409
    assert response.json()["error"] == f"{row.name} already has a snapshot named 'once'. Choose another name."


# Which kind -------------------------------------------------------------------------------------

def test_memory_of_a_shut_off_domain_is_refused(snap_domain, bob):
    response = take(bob, snap_domain(owner=bob), name="mem", memory=True)
    assert response.status_code == 400
    assert "there is no memory to include" in response.json()["error"]


def test_a_running_domain_with_internal_snapshots_needs_its_memory_in_the_next(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    taken(bob, row, "cold")
    libvirt_domain(row).create()
    response = take(bob, row, name="warm", memory=False)
    assert response.status_code == 400
    assert response.json()["error"] == (f"{row.name} has internal snapshots, and a running domain's internal "
                                        "snapshot always includes its memory: include memory, or shut the domain "
                                        "down first.")


def test_a_domain_with_internal_snapshots_keeps_that_kind(snap_domain, bob):
    row = snap_domain(owner=bob)
    taken(bob, row, "inside")
    response = take(bob, row, name="outside", kind="external")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{row.name} already has internal snapshots, and a domain keeps one "
                                               "kind: mixing the two breaks libvirt's revert and delete.")


def test_a_uefi_domain_is_refused_an_internal_snapshot(snap_domain, bob):
    response = take(bob, snap_domain(owner=bob, os=EFI_FIRMWARE), name="inside", kind="internal")
    assert response.status_code == 400
    assert "it boots with UEFI, whose variables an internal snapshot does not save" in response.json()["error"]


def test_an_unknown_kind_is_refused_before_anything_is_asked(snap_domain, bob):
    response = take(bob, snap_domain(owner=bob), name="x", kind="both")
    assert response.status_code == 400
    assert response.json()["error"] == 'kind: "both" is not a valid choice.'


def test_a_snapshot_libvirt_refuses_fails_its_job_with_nothing_made_and_nothing_reserved(snap_domain, bob,
                                                                                      libvirt_domain):
    # The test driver takes no external (disk-only) snapshots: the plan allows one, the job meets the refusal.
    row = snap_domain(owner=bob)
    response = take(bob, row, name="outside", kind="external")
    assert response.json()["kind"] == "external", response.json()
    assert Job.objects.get(pk=response.json()["job"]).reserved["disk_gib"] > 1000  # up to the disk's size
    job = run(response)
    assert job.state == Job.FAILED and "unsupported flags" in job.error.lower()  # libvirt's refusal, passed on
    assert job.reserved == {} and snapshot_names(libvirt_domain(row)) == []
    assert take(bob, row, name="inside").status_code == 202  # nothing left in the way


# Reverting and deleting -------------------------------------------------------------------------

def test_reverting_makes_the_snapshot_current_and_brings_back_its_state(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob, start=True)
    taken(bob, row, "running", memory=True)
    libvirt_domain(row).destroy()
    taken(bob, row, "stopped")

    job = run(revert(bob, row, "running"))
    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["message"] == f"{row.name} is back at snapshot running and is running."
    assert libvirt_domain(row).isActive() and Domain.objects.get(pk=row.pk).state == "running"
    assert [s["name"] for s in listing(bob, row) if s["current"]] == ["running"]

    assert run(revert(bob, row, "stopped")).state == Job.SUCCEEDED
    assert not libvirt_domain(row).isActive() and Domain.objects.get(pk=row.pk).state == "shutoff"
    assert [s["name"] for s in listing(bob, row) if s["current"]] == ["stopped"]


def test_deleting_a_snapshot_keeps_its_children_under_its_parent(snap_domain, bob):
    row = snap_domain(owner=bob)
    for name in ("a", "b", "c"):
        taken(bob, row, name)
    job = run(delete(bob, row, "b"))
    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["message"] == f"Deleted 1 snapshot(s) of {row.name}."
    assert [(s["name"], s["parent"]) for s in listing(bob, row)] == [("a", None), ("c", "a")]


def test_deleting_with_children_removes_the_whole_branch(snap_domain, bob, libvirt_domain):
    row = snap_domain(owner=bob)
    for name in ("keep", "gone", "gone-too", "gone-three"):
        taken(bob, row, name)
    job = run(delete(bob, row, "gone", children=True))
    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["message"] == f"Deleted 3 snapshot(s) of {row.name}."
    assert snapshot_names(libvirt_domain(row)) == ["keep"]


def test_reverting_to_or_deleting_a_snapshot_that_does_not_exist_is_404_with_a_sentence(snap_domain, bob):
    row = snap_domain(owner=bob)
    for response in (revert(bob, row, "never-taken"), delete(bob, row, "never-taken")):
        assert response.status_code == 404
        assert response.json()["error"] == f"{row.name} has no snapshot named 'never-taken'."
    assert not Job.objects.exists()


# Who may ----------------------------------------------------------------------------------------

def test_a_stranger_finds_no_snapshots_of_someone_elses_domain(snap_domain, bob, stranger):
    row = snap_domain(owner=bob)
    taken(bob, row, "mine")
    client = api_for(stranger)
    base = f"/api/v1/domains/{row.pk}"
    assert client.get(f"{base}/snapshots/").status_code == 404
    assert client.post(f"{base}/snapshots/", {"name": "theirs"}, format="json").status_code == 404
    assert client.post(f"{base}/snapshots/mine/revert/").status_code == 404
    assert client.delete(f"{base}/snapshots/mine/").status_code == 404
    assert client.post(f"{base}/reset-to-template/").status_code == 404
    assert Job.objects.filter(user=stranger).count() == 0


def test_anonymous_requests_are_refused(snap_domain, client):
    row = snap_domain()
    assert client.get(f"/api/v1/domains/{row.pk}/snapshots/", HTTP_ACCEPT="application/json").status_code == 401


def test_a_templates_domain_has_no_snapshots(admin, template, template_source):
    response = take(admin, template_source, name="never")
    assert response.status_code == 409
    assert response.json()["error"] == (f"{template_source.name} is a template's domain: its disks are the read-only "
                                        "bases of clones, so it has no snapshots. Snapshot a clone instead.")


def test_a_domain_with_snapshots_becomes_a_template_only_once_they_are_deleted(api, admin, snapshotted_source):
    taken(admin, snapshotted_source, "first")
    body = {"domain": snapshotted_source.pk, "name": "snap-template"}
    response = api.post("/api/v1/templates/", body, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == (f"{snapshotted_source.name} has 1 snapshot(s). Delete them on its Snapshots "
                                        "tab first: a template's disks become the read-only bases of its clones, and "
                                        "no snapshot survives that.")
    assert run(delete(admin, snapshotted_source, "first")).state == Job.SUCCEEDED
    assert api.post("/api/v1/templates/", body, format="json").status_code == 201


def test_only_a_linked_clone_can_be_reset_to_its_template(snap_domain, bob):
    row = snap_domain(owner=bob)
    response = api_for(bob).post(f"/api/v1/domains/{row.pk}/reset-to-template/")
    assert response.status_code == 409
    assert response.json()["error"] == (f"{row.name} is not a linked clone of a template, so there is nothing to "
                                        "reset it to.")


def test_a_second_snapshot_operation_waits_for_the_first(snap_domain, bob):
    row = snap_domain(owner=bob)
    first = take(bob, row, name="first")
    assert first.status_code == 202  # queued: no worker runs it in this test
    second = take(bob, row, name="second")
    assert second.status_code == 409
    assert second.json()["error"] == (f"Another snapshot operation on {row.name} has not finished yet; wait for it "
                                      "to end.")
    assert revert(bob, row, "first").status_code == 409


def test_an_owner_out_of_disk_quota_cannot_snapshot_memory(snap_domain, bob):
    # The memory state is written to disk, so it counts against the disk quota.
    Quota.objects.create(user=bob, disk_gib=0)
    row = snap_domain(owner=bob, start=True)
    response = take(bob, row, name="live", memory=True)
    assert response.status_code == 409
    # 128 MiB of memory: 0.125 GiB, rounded up to hundredths, so a small memory state still counts.
    assert response.json()["error"].startswith("That needs 0.13 GiB of disk, but your quota has 0 left (of 0).")
    assert not Job.objects.exists()


def test_an_administrator_has_no_quota_to_run_out_of(snap_domain, admin):
    Quota.objects.create(user=admin, disk_gib=0)
    row = snap_domain(owner=admin, start=True)
    response = take(admin, row, name="live", memory=True)
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["job"]).reserved == {"disk_gib": 0.13}


# A clone's whole life ---------------------------------------------------------------------------

def linked_clone(template, owner):  # type: ignore[no-untyped-def]
    template.users.add(owner)
    assert run_clone(clone(owner, template)).state == Job.SUCCEEDED
    return Domain.objects.get(template=template, owner=owner)


def test_an_owner_snapshots_reverts_and_deletes_on_their_linked_clone(template, clone_snapshots, bob, test_conn):
    row = linked_clone(template, bob)
    taken(bob, row, "fresh")
    test_conn.lookupByUUIDString(row.uuid).create()
    taken(bob, row, "started", memory=True)
    assert run(revert(bob, row, "fresh")).state == Job.SUCCEEDED
    assert not test_conn.lookupByUUIDString(row.uuid).isActive()
    assert [s["name"] for s in listing(bob, row) if s["current"]] == ["fresh"]
    assert run(delete(bob, row, "fresh", children=True)).state == Job.SUCCEEDED
    assert listing(bob, row) == []


def test_resetting_a_linked_clone_forces_it_off_onto_a_new_overlay_on_the_base(template, clone_snapshots, bob,
                                                                                test_conn):
    row = linked_clone(template, bob)
    dom = test_conn.lookupByUUIDString(row.uuid)
    dom.create()
    overlay = f"/default-pool/{row.name}-vda.qcow2"
    base = template.disks[0]["path"]
    # Nothing writes into a file on the test driver: an overlay of another size stands for a used one.
    test_conn.storageVolLookupByPath(overlay).delete(0)
    test_conn.storagePoolLookupByName("default-pool").createXML(
        f"<volume><name>{row.name}-vda.qcow2</name><capacity unit='MiB'>32</capacity><target><format type='qcow2'/>"
        f"</target><backingStore><path>{base}</path><format type='qcow2'/></backingStore></volume>", 0)
    job = run(api_for(bob).post(f"/api/v1/domains/{row.pk}/reset-to-template/"))
    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["message"] == f"{row.name} is as {template.name} made it, and shut off."
    assert not dom.isActive() and overlay in dom.XMLDesc(0)
    fresh = test_conn.storageVolLookupByPath(overlay)
    assert fresh.info()[1] == 64 * 1024**2 and base in fresh.XMLDesc(0)  # made again on the template's base
    assert Domain.objects.get(pk=row.pk).state == "shutoff"


def test_resetting_a_linked_clone_discards_its_snapshots(template, clone_snapshots, bob, test_conn):
    row = linked_clone(template, bob)
    taken(bob, row, "soon-gone")
    job = run(api_for(bob).post(f"/api/v1/domains/{row.pk}/reset-to-template/"))
    assert job.state == Job.SUCCEEDED, job.error
    assert test_conn.lookupByUUIDString(row.uuid).snapshotNum(0) == 0 and listing(bob, row) == []


def test_removing_a_domain_with_snapshots_leaves_no_snapshot_behind(snap_domain, bob, test_conn):
    row = snap_domain(owner=bob)
    taken(bob, row, "one")
    taken(bob, row, "two")
    response = api_for(bob).post(f"/api/v1/domains/{row.pk}/remove/")
    assert response.status_code == 200, response.json()
    assert row.name not in {d.name() for d in test_conn.listAllDomains(0)}
    assert not Domain.objects.filter(pk=row.pk).exists()


# Telling the browsers ---------------------------------------------------------------------------

def events_while(action) -> list[dict]:  # type: ignore[no-untyped-def]
    """The events published to every browser's group while `action()` runs."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(GROUP, channel)
    try:
        action()

        async def drain() -> list[dict]:
            found = []
            while True:
                try:
                    found.append((await asyncio.wait_for(layer.receive(channel), 1))["event"])
                except TimeoutError:
                    return found

        return async_to_sync(drain)()
    finally:
        async_to_sync(layer.group_discard)(GROUP, channel)


def test_a_finished_snapshot_job_tells_the_browsers_of_its_owner_and_the_administrators(snap_domain, bob, admin,
                                                                                     stranger):
    row = snap_domain(owner=bob)
    events = events_while(lambda: taken(bob, row, "told"))
    [told] = [e for e in events if e["type"] == "snapshots"]
    assert told == {"type": "snapshots", "id": row.pk, "host": row.host_id, "uuid": row.uuid, "owner": bob.pk,
                    "change": "created", "name": "told"}
    assert may_receive(bob, told) and may_receive(admin, told)
    assert not may_receive(stranger, told)


def test_the_snapshots_of_a_domain_nobody_owns_are_told_to_administrators_only(snap_domain, admin, bob):
    message = snapshots_message(snap_domain(), "deleted", "old")
    assert message["owner"] is None
    assert may_receive(admin, message) and not may_receive(bob, message)


def test_a_size_that_cannot_be_known_is_null_not_zero(snap_domain, bob):
    """The test driver reports a fixed allocation, so an internal snapshot's growth cannot be measured
    there: its size is unknown (null), never a made-up 0 bytes."""
    from webvirt.snapshots.models import SnapshotSize

    row = snap_domain(owner=bob, start=True)
    taken(bob, row, "live", memory=True)
    taken(bob, row, "later", memory=True)
    assert [(s["name"], s["size_bytes"]) for s in listing(bob, row)] == [("live", None), ("later", None)]
    assert not SnapshotSize.objects.filter(domain=row).exists()
    # A 0 stored by an older webvirt for such a snapshot means the same: unknown.
    SnapshotSize.objects.create(domain=row, name="live", size_bytes=0)
    SnapshotSize.objects.create(domain=row, name="later", size_bytes=5 * 2**20)
    assert [s["size_bytes"] for s in listing(bob, row)] == [None, 5 * 2**20]
