"""Bulk actions through the API: the request is checked as a whole, the job acts on each domain through
its single-domain service (policy, audit), a line per domain, on libvirt's test driver.

The jobs run in this process (`run_inline`), on a database their threads see (transactional tests).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import libvirt
import pytest
from django.utils import timezone

from tests.conftest import domain_xml
from tests.people import api_for, unique
from webvirt.accounts.models import AuditEntry
from webvirt.domains.bulk import MAX_SELECTION
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.jobs.models import Job
from webvirt.jobs.runner import run_inline

BULK = "/api/v1/domains/bulk/"


def run(api: Any, body: dict) -> Job:
    """POST a bulk request, check its 202 answer, run its job here and return it finished."""
    response = api.post(BULK, body, format="json")
    assert response.status_code == 202, response.json()
    answer = response.json()
    assert answer["url"] == f"/api/v1/jobs/{answer['job']}/"
    job = Job.objects.get(pk=answer["job"])
    assert (job.kind, answer["count"]) == ("bulk", len(job.params["ids"]))
    run_inline(job)
    job.refresh_from_db()
    return job


def is_active(test_conn: libvirt.virConnect, row: Domain) -> bool:
    return bool(test_conn.lookupByUUIDString(row.uuid).isActive())


@pytest.mark.django_db(transaction=True)
def test_an_owners_bulk_shutdown_does_their_nine_and_skips_the_one_not_theirs(
        domain_row: Callable[..., Domain], test_conn: libvirt.virConnect, bob: Any, stranger: Any) -> None:
    rows = [domain_row("bulk", start=True) for _ in range(10)]
    Domain.objects.filter(pk__in=[r.pk for r in rows[:9]]).update(owner=bob)
    Domain.objects.filter(pk=rows[9].pk).update(owner=stranger)

    job = run(api_for(bob), {"ids": [r.pk for r in rows], "action": "shutdown"})

    assert job.state == Job.SUCCEEDED, job.error
    assert [is_active(test_conn, r) for r in rows] == [False] * 9 + [True]
    assert job.result["message"] == "Shut down: 9 of 10 done, 1 skipped, 0 failed."
    lines = {line["id"]: line for line in job.result["domains"]}
    assert lines[rows[9].pk] == {"id": rows[9].pk, "name": f"#{rows[9].pk}", "ok": False,
                                 "outcome": "skipped: not found, or not yours"}
    assert all(lines[r.pk]["ok"] and lines[r.pk]["name"] == r.name for r in rows[:9])
    # One line per domain in the job's log; the stranger's domain is named by its id only.
    assert len(job.log) == 10 and not any(rows[9].name in line for line in job.log)
    assert any(line.endswith(f"#{rows[9].pk}: skipped: not found, or not yours") for line in job.log)
    # Audited as the single action is, per domain, beside one entry for the request.
    assert AuditEntry.objects.filter(action="domain.shutdown", outcome=AuditEntry.OK).count() == 9
    assert AuditEntry.objects.filter(action="domain.shutdown", outcome=AuditEntry.REFUSED).count() == 1
    assert AuditEntry.objects.filter(action="domain.bulk", outcome=AuditEntry.OK, object_id=str(job.pk)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_filter_selects_what_matches_among_what_the_user_sees(
        domain_row: Callable[..., Domain], test_conn: libvirt.virConnect, api: Any) -> None:
    running = [domain_row("bulkf", start=True) for _ in range(3)]
    stopped = domain_row("bulkf")
    other = domain_row("other", start=True)
    search = running[0].name.split("-")[0]  # "bulkf": the prefix they share, and `other` lacks

    job = run(api, {"filter": {"search": search, "state": "running"}, "action": "destroy"})

    assert job.state == Job.SUCCEEDED, job.error
    assert sorted(job.params["ids"]) == sorted(r.pk for r in running)
    assert [is_active(test_conn, r) for r in running] == [False] * 3
    assert is_active(test_conn, other) and not is_active(test_conn, stopped)


@pytest.mark.django_db(transaction=True)
def test_a_domain_in_the_wrong_state_fails_with_its_sentence_and_the_others_are_done(
        domain_row: Callable[..., Domain], test_conn: libvirt.virConnect, api: Any) -> None:
    stopped, other = domain_row("bulks"), domain_row("bulks")
    test_conn.lookupByUUIDString(other.uuid).create()
    job = run(api, {"ids": [stopped.pk, other.pk, 999999], "action": "suspend"})
    lines = {line["id"]: line["outcome"] for line in job.result["domains"]}
    assert job.state == Job.SUCCEEDED
    assert lines[stopped.pk] == (f"failed: {stopped.name} is shut off, so it cannot suspend. That needs it to be "
                                 "blocked or running.")
    assert lines[other.pk] == "suspended; it is paused"
    assert lines[999999] == "skipped: not found, or not yours"
    assert job.result["message"] == "Suspend: 1 of 3 done, 1 skipped, 1 failed."


@pytest.mark.django_db(transaction=True)
def test_extend_and_remove_go_through_their_own_services(
        domain_row: Callable[..., Domain], test_conn: libvirt.virConnect, api: Any) -> None:
    rows = [domain_row("bulke") for _ in range(2)]
    until = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    job = run(api, {"ids": [r.pk for r in rows], "action": "extend", "args": {"expires_at": until.isoformat()}})
    assert job.state == Job.SUCCEEDED, job.error
    assert [Domain.objects.get(pk=r.pk).expires_at for r in rows] == [until, until]

    job = run(api, {"ids": [rows[0].pk], "action": "remove"})  # not a clone: undefined, its disks kept
    assert job.result["domains"][0]["outcome"] == "undefined; its disks are kept (it is not a clone)"
    assert not Domain.objects.filter(pk=rows[0].pk).exists()
    with pytest.raises(libvirt.libvirtError):
        test_conn.lookupByUUIDString(rows[0].uuid)


@pytest.mark.django_db(transaction=True)
def test_a_job_where_nothing_could_be_done_fails(domain_row: Callable[..., Domain], bob: Any) -> None:
    row = domain_row("bulkn")
    job = run(api_for(bob), {"ids": [row.pk], "action": "start"})
    assert job.state == Job.FAILED
    assert job.error == f"#{row.pk}: skipped: not found, or not yours"


# The request, checked as a whole: 400 with a sentence, and no job ------------------------------------

@pytest.mark.parametrize(("body", "error"), [
    ({"ids": [1], "action": "explode"},
     "'explode' is not a bulk action. Use one of: start, shutdown, reboot, destroy, suspend, resume, snapshot, "
     "remove, extend."),
    ({"ids": [], "action": "start"}, "No domain is selected."),
    ({"action": "start"}, 'Give either "ids" (a list of domain ids) or "filter" (search, host, state).'),
    ({"ids": [1], "filter": {}, "action": "start"},
     'Give either "ids" (a list of domain ids) or "filter" (search, host, state).'),
    ({"ids": ["a"], "action": "start"}, '"ids" is a list of domain ids (numbers).'),
    ({"ids": [1], "action": "start", "args": {"force": True}}, "Start takes no argument force."),
    ({"ids": [1], "action": "extend", "args": {}},
     "Give the new expiry as a date and time, e.g. 2030-01-31T12:00:00Z."),
    ({"ids": [1], "action": "extend", "args": {"expires_at": "2001-01-01T00:00:00Z"}},
     "The new expiry time is in the past."),
    ({"ids": [1], "action": "snapshot", "args": {"name": "no spaces"}},
     "'no spaces' is not a usable snapshot name: use up to 63 letters, digits, '.', '_' and '-', starting with a "
     "letter or digit."),
    ({"filter": {"color": "red"}, "action": "start"}, '"filter" is an object with any of: search, host, state.'),
    ({"filter": {"state": "sleepy"}, "action": "start"},
     "The filter is not valid (state: Select a valid choice. sleepy is not one of the available choices.)."),
    ({"filter": {"search": "no-such-domain-anywhere"}, "action": "start"}, "No domain matches this filter."),
    ({"ids": list(range(1, MAX_SELECTION + 2)), "action": "start"},
     "2,001 domains are selected; a bulk action takes at most 2,000. Narrow the selection (by host or state) "
     "and run it in parts."),
])
@pytest.mark.django_db
def test_a_bad_request_is_refused_with_a_sentence(api: Any, body: dict, error: str) -> None:
    response = api.post(BULK, body, format="json")
    assert (response.status_code, response.json()) == (400, {"error": error, "code": "invalid"})
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_host_the_user_cannot_see_is_no_valid_filter(test_host: Any, bob: Any) -> None:
    response = api_for(bob).post(BULK, {"filter": {"host": test_host.pk}, "action": "start"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("The filter is not valid (host: Select a valid choice.")


@pytest.mark.django_db
def test_only_post_and_only_signed_in(client: Any, api: Any) -> None:
    assert api.get(BULK).status_code == 405
    assert client.post(BULK, {"ids": [1], "action": "start"}, content_type="application/json").status_code == 401


# The list's bar ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_list_has_a_box_per_row_and_the_bar_of_actions(domain_row: Callable[..., Domain],
                                                           admin_client: Any) -> None:
    row = domain_row("bulkl")
    html = admin_client.get("/domains/").content.decode()
    assert f'<input type="checkbox" name="ids" value="{row.pk}" form="bulk-form" data-bulk-row' in html
    assert 'aria-label="Select every domain on this page"' in html
    for label in ("Start", "Shut down", "Reboot", "Force off", "Suspend", "Resume", "Snapshot", "Remove",
                  "Extend expiry"):
        assert f">{label}</button>" in html


@pytest.mark.django_db(transaction=True)
def test_the_bar_starts_one_job_and_shows_its_page(domain_row: Callable[..., Domain], admin_client: Any,
                                                   test_conn: libvirt.virConnect) -> None:
    rows = [domain_row("bulkp") for _ in range(2)]
    response = admin_client.post("/domains/bulk/", {"ids": [r.pk for r in rows], "action": "start"})
    job = Job.objects.get(kind="bulk")
    assert (response.status_code, response["Location"]) == (302, f"/jobs/{job.pk}/")
    run_inline(job)
    assert all(is_active(test_conn, r) for r in rows)


@pytest.mark.django_db
def test_the_bar_says_what_is_wrong_on_the_list(admin_client: Any) -> None:
    response = admin_client.post("/domains/bulk/", {"action": "start"}, follow=True)
    assert response.redirect_chain[-1][0] == "/domains/"
    assert "No domain is selected." in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_bulk_snapshot_runs_the_snapshots_job_of_each_domain(
        test_host: Any, forget: Callable[[str], str], test_conn: libvirt.virConnect, api: Any) -> None:
    pool = test_conn.storagePoolLookupByName("default-pool")
    uuids, volumes = [], []
    for _ in range(2):  # a qcow2 disk in a pool: internal snapshots
        name = forget(unique("bulksnap"))
        volumes.append(pool.createXML(f"<volume><name>{name}.qcow2</name><capacity unit='MiB'>8</capacity>"
                                      "<target><format type='qcow2'/></target></volume>", 0))
        xml = domain_xml(name).replace(f"<source file='/guest/{name}.img'/>",
                                       f"<driver name='qemu' type='qcow2'/><source file='{volumes[-1].path()}'/>")
        uuids.append(test_conn.defineXML(xml).UUIDString())
    sync_host(test_host)
    rows = [Domain.objects.get(uuid=uuid) for uuid in uuids]
    try:
        job = run(api, {"ids": [r.pk for r in rows], "action": "snapshot", "args": {"name": "exam-start"}})
        assert job.state == Job.SUCCEEDED, job.error
        assert {line["outcome"] for line in job.result["domains"]} == {"internal snapshot exam-start taken"}
        for row in rows:
            assert test_conn.lookupByUUIDString(row.uuid).snapshotListNames(0) == ["exam-start"]
        taken = Job.objects.filter(kind="snapshot_create", state=Job.SUCCEEDED)
        assert sorted(int(j.target_id) for j in taken) == sorted(r.pk for r in rows)
    finally:
        for row in rows:
            dom = test_conn.lookupByUUIDString(row.uuid)
            for snap in dom.listAllSnapshots(0):
                snap.delete(0)
        for vol in volumes:
            vol.delete(0)
