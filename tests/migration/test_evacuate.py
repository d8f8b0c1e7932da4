"""Evacuating a host through the REST API: every running domain moves off it, live, and the host stays in
maintenance (nothing new is placed on it) until an administrator ends that.

Three tiny guests run on host A of ``two_hosts``, their overlays in ``mig-shared``; a real Celery worker
runs the job beside an event watcher.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.guest.serial import SerialShell, read_disk_marker, read_memory_counter
from tests.migration.conftest import PREFIX, Mig
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

GUESTS = 3
IN_MAINTENANCE = "Host a is in maintenance: nothing new is placed on it until an administrator ends that mode."


def install(mig: Mig) -> Any:
    """An install request onto A that fails at once whatever happens: maintenance is checked first, then
    the settings (0 vCPUs), so no job is ever made."""
    return mig.api.post("/api/v1/install/", {"host": mig.a.pk, "name": f"{PREFIX}new", "vcpus": 0,
                                             "pool": "mig-pool", "boot": ["hd"]}, format="json")


def test_evacuating_a_host_moves_every_running_guest_and_keeps_it_in_maintenance(
        mig: Mig, job_worker: Any) -> None:
    names = [f"{PREFIX}evac-{n}" for n in range(1, GUESTS + 1)]
    rows = [mig.define(name, mig.overlay(mig.two.shared_dir, f"{name}.qcow2", mig.bases.shared)) for name in names]
    for row in rows:  # they boot together
        mig.start(row)
    for n, name in enumerate(names):
        mig.prepare(mig.ca.lookupByName(name), counter=600 + n, marker=f"evac-{n}")
    assert install(mig).status_code == 400  # not in maintenance yet: the vCPUs are what is wrong

    started = time.monotonic()
    response = mig.api.post(f"/api/v1/hosts/{mig.a.pk}/evacuate/")
    assert response.status_code == 202, response.json()
    # Maintenance starts with the request: nothing new lands on A while it empties.
    assert mig.api.get(f"/api/v1/hosts/{mig.a.pk}/").json()["maintenance"] is True
    job = mig.wait_for_job(response.json()["job"])
    took = time.monotonic() - started
    assert job["state"] == "succeeded", f"{job['error']}\n" + "\n".join(job["log"])
    assert job["message"] == f"{GUESTS} of {GUESTS} domain(s) moved off a; it stays in maintenance."
    # One line per domain, in the log and in the result.
    for name in names:
        pattern = rf"{name} moved to b in [0-9.]+ s with [0-9]+ ms of downtime\."
        assert re.fullmatch(rf"moved: {pattern}", job["result"]["domains"][name]), job["result"]
        assert sum(bool(re.search(rf"^\S+ {name}: moved: {pattern}$", line)) for line in job["log"]) == 1, job["log"]
    assert (job["result"]["succeeded"], job["result"]["failed"], job["error"]) == (GUESTS, 0, "")

    # All run on B, each the same guest (its RAM and its disk), each the same row; A is empty.
    assert mig.names(mig.ca) == []
    assert mig.names(mig.cb) == [(name, True, True) for name in names]
    for n, (name, row) in enumerate(zip(names, rows, strict=True)):
        with SerialShell(mig.cb.lookupByName(name)) as shell:
            assert (read_memory_counter(shell), read_disk_marker(shell)) == (600 + n, f"evac-{n}")
        moved = Domain.objects.get(pk=row["id"])
        assert (moved.host_id, moved.migrating_to_id, moved.state) == (mig.b.pk, None, "running")
    assert Domain.objects.filter(host=mig.a).count() == 0
    assert Domain.objects.count() == GUESTS

    # A stays in maintenance: nothing new is placed there, not even a domain moving back.
    host = mig.api.get(f"/api/v1/hosts/{mig.a.pk}/").json()
    assert host["maintenance"] is True
    refused = install(mig)
    assert (refused.status_code, refused.json()) == (409, {"error": IN_MAINTENANCE, "code": "state"})
    back = mig.api.get(f"/api/v1/domains/{rows[0]['id']}/migrate/check/", {"host": mig.a.pk}).json()
    assert back == {"ok": False, "problems": ["a is in maintenance: nothing new is placed on it."], "snapshots": 0}

    # Ending maintenance lets things in again.
    response = mig.api.post(f"/api/v1/hosts/{mig.a.pk}/maintenance/", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["maintenance"] is False, response.json()
    assert mig.api.get(f"/api/v1/hosts/{mig.a.pk}/").json()["maintenance"] is False
    assert install(mig).status_code == 400
    back = mig.api.get(f"/api/v1/domains/{rows[0]['id']}/migrate/check/", {"host": mig.a.pk}).json()
    assert back == {"ok": True, "problems": [], "snapshots": 0}
    assert list(Job.objects.values_list("kind", flat=True)) == ["evacuate"]
    print(f"evacuated {GUESTS} guests (2 at a time) in {took:.1f} s from POST to the job's end: "
          + "; ".join(job["result"]["domains"].values()))


def test_evacuating_an_empty_host_only_starts_maintenance(mig: Mig, job_worker: Any) -> None:
    row = mig.define(f"{PREFIX}idle", mig.overlay(mig.two.shared_dir, f"{PREFIX}idle.qcow2", mig.bases.shared))
    response = mig.api.post(f"/api/v1/hosts/{mig.a.pk}/evacuate/")
    assert response.status_code == 202, response.json()
    job = mig.wait_for_job(response.json()["job"])
    assert job["state"] == "succeeded", job
    assert job["message"] == "Nothing runs on a: it is empty and in maintenance."
    # A shut-off domain is not running: it stays where it is.
    assert mig.names(mig.ca) == [(f"{PREFIX}idle", False, True)] and mig.names(mig.cb) == []
    assert Domain.objects.get(pk=row["id"]).host_id == mig.a.pk
    assert mig.api.get(f"/api/v1/hosts/{mig.a.pk}/").json()["maintenance"] is True
