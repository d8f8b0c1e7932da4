"""Live and offline migration through the REST API, between the two session daemons of ``two_hosts``
registered as webvirt hosts ``a`` and ``b``, the jobs run by a real Celery worker beside an event watcher.

- a running tiny guest moves live in each storage mode: shared (its overlay in ``mig-shared``),
  copy-all (a standalone qcow2 in A's ``mig-pool``, which arrives in B's) and copy-inc (an overlay in
  A's ``mig-pool`` on a base that both hosts hold under the same name). Afterwards it runs on B only,
  was not rebooted (a value in its RAM), has its disk (a marker), and webvirt's row is the same row
  (id, owner, expiry) on host B;
- a throttled copy is cancelled half-way: the job ends at once, the guest keeps running on A, and
  nothing of it is left on B, not even the volume webvirt made there;
- the pre-flight check names each problem in a sentence, and a migration with problems is refused
  (409) without a job;
- internal snapshots travel with shared storage (parent and current included, and reverting works);
- a shut-off domain moves offline;
- a domain's owner who is not an administrator hears 404 from everything here.

Timings (migration per mode, cancel latency) are printed with ``-s`` and summed up at the end.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.utils import timezone

from tests.guest.serial import SerialShell, read_disk_marker, read_memory_counter, set_memory_counter
from tests.migration.conftest import PREFIX, Mig
from tests.migration.daemons import TwoHosts
from tests.people import api_for
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
RESULTS: list[str] = []
DOWNTIME = re.compile(r" moved to b in [0-9.]+ s with ([0-9]+) ms of downtime")


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if RESULTS:
        print("\n== migrations through webvirt's API:\n  " + "\n  ".join(RESULTS))


# Helpers -------------------------------------------------------------------------------------------

def check(mig: Mig, row: dict, host: Any, storage: str = "shared", live: bool = True) -> dict:
    response = mig.api.get(f"/api/v1/domains/{row['id']}/migrate/check/",
                           {"host": host.pk, "storage": storage, "live": "true" if live else "false"})
    assert response.status_code == 200, response.json()
    return dict(response.json())


def migrate(mig: Mig, row: dict, **body: Any) -> tuple[dict, float]:
    """POST the migration to B; the finished job and the seconds from the request to its end."""
    started = time.monotonic()
    response = mig.api.post(f"/api/v1/domains/{row['id']}/migrate/", {"host": mig.b.pk, **body}, format="json")
    assert response.status_code == 202, response.json()
    job = mig.wait_for_job(response.json()["job"])
    return job, time.monotonic() - started


def succeeded(job: dict) -> None:
    assert job["state"] == "succeeded", f"{job['state']}: {job['error']}\n" + "\n".join(job["log"])


def guest_state(dom: libvirt.virDomain) -> tuple[int | None, str]:
    """The counter in the running guest's RAM and the marker on its disk."""
    with SerialShell(dom) as shell:
        return read_memory_counter(shell), read_disk_marker(shell)


def disk_source(dom: libvirt.virDomain, flags: int = 0) -> str:
    from lxml import etree

    return str(etree.fromstring(dom.XMLDesc(flags).encode()).xpath("./devices/disk[@device='disk']/source/@file")[0])


def image_info(path: Path) -> dict:
    import json

    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return dict(json.loads(out))


def arrived(mig: Mig, row: dict, name: str, *, host: Any) -> Domain:
    """webvirt's row of the moved domain: still the one row, now on `host`, no longer migrating."""
    moved = Domain.objects.get(pk=row["id"])
    assert (moved.host_id, moved.migrating_to_id, moved.uuid) == (host.pk, None, row["uuid"])
    assert Domain.objects.filter(uuid=row["uuid"]).count() == 1, list(Domain.objects.values("pk", "host", "name"))
    answer = mig.api.get(f"/api/v1/domains/{row['id']}/").json()
    assert (answer["id"], answer["host"], answer["name"]) == (row["id"], host.pk, name)
    return moved


# 1. Live, in each storage mode ---------------------------------------------------------------------

def _shared_disk(mig: Mig, name: str) -> Path:
    return mig.overlay(mig.two.shared_dir, f"{name}.qcow2", mig.bases.shared)


def _standalone_disk(mig: Mig, name: str) -> Path:
    return mig.standalone(mig.two.a.pool_dir, f"{name}.qcow2")


def _linked_clone(mig: Mig, name: str) -> Path:
    return mig.overlay(mig.two.a.pool_dir, f"{name}.qcow2", mig.bases.a)


DISKS = {"shared": _shared_disk, "copy-all": _standalone_disk, "copy-inc": _linked_clone}


@pytest.mark.parametrize("storage", list(DISKS))
def test_a_running_guest_moves_live(mig: Mig, job_worker: Any, bob: Any, storage: str) -> None:
    name = f"{PREFIX}live-{storage}"
    counter = 100 + list(DISKS).index(storage)
    disk = DISKS[storage](mig, name)
    row = mig.boot(name, disk, counter=counter, marker=f"marker-{storage}")
    expires = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    Domain.objects.filter(pk=row["id"]).update(owner=bob, expires_at=expires)

    assert check(mig, row, mig.b, storage) == {"ok": True, "problems": [], "snapshots": 0}
    job, took = migrate(mig, row, live=True, storage=storage, max_downtime_ms=300)
    succeeded(job)
    downtime = DOWNTIME.search(job["message"])
    assert downtime, job["message"]  # "wvm-live-shared moved to b in 2.9 s with 170 ms of downtime."

    # Only B has it, running, defined; A has no definition left.
    assert mig.names(mig.ca) == []
    assert mig.names(mig.cb) == [(name, True, True)]
    dom = mig.cb.lookupByName(name)
    assert guest_state(dom) == (counter, f"marker-{storage}"), "rebooted, or the disk is not its own"

    moved = arrived(mig, row, name, host=mig.b)
    assert (moved.owner_id, moved.expires_at, moved.state) == (bob.pk, expires, "running")

    on_b = mig.two.b.pool_dir / disk.name
    if storage == "shared":
        assert disk_source(dom) == disk_source(dom, libvirt.VIR_DOMAIN_XML_INACTIVE) == str(disk)
    else:
        # The running domain and its persistent definition both use B's volume, in B's pool of the same name.
        assert disk_source(dom) == disk_source(dom, libvirt.VIR_DOMAIN_XML_INACTIVE) == str(on_b)
        assert disk.name in mig.volumes(mig.cb)
        # The copy on A is nobody's now: deleted (never the template's base, which copy-inc layers on).
        assert not disk.exists() and disk.name not in mig.volumes(mig.ca)
        assert "old disks on a were deleted" in job["message"], job["message"]
        assert storage != "copy-inc" or mig.bases.a.exists()
        info = image_info(on_b)
        if storage == "copy-all":
            assert "backing-filename" not in info and "full-backing-filename" not in info, info
        else:
            assert info["backing-filename"] == str(mig.bases.b), info  # B's own base, not A's path
            assert info["actual-size"] < 4 * MIB, info  # the overlay only, not the base's 15 MiB
    RESULTS.append(f"live, {storage}: job {took:.1f} s from POST to its end, {downtime[1]} ms of downtime "
                   f"({job['message']})")
    print(RESULTS[-1])


# 2. Cancel -----------------------------------------------------------------------------------------

def test_cancel_stops_a_copy_half_way_and_leaves_nothing_on_the_destination(mig: Mig, job_worker: Any) -> None:
    name = f"{PREFIX}cancel"
    disk = _standalone_disk(mig, name)
    row = mig.boot(name, disk, counter=200, marker="marker-cancel")
    # 1 MiB/s: copying the disk takes half a minute.
    response = mig.api.post(f"/api/v1/domains/{row['id']}/migrate/",
                            {"host": mig.b.pk, "storage": "copy-all", "bandwidth_mib_s": 1}, format="json")
    assert response.status_code == 202, response.json()
    job_id = response.json()["job"]
    posted = time.monotonic()

    # Wait until the job reports data moved: the disk copy (which comes before the memory) has begun.
    moving = re.compile(r"^([0-9,]+) of ([0-9,]+) MiB moved")
    deadline = posted + 90
    while True:
        job = mig.api.get(f"/api/v1/jobs/{job_id}/").json()
        found = moving.match(job["message"])
        if found and int(found[1].replace(",", "")) > 0:
            break
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"no disk copy progress seen: {job}"
        time.sleep(0.1)
    started_after = time.monotonic() - posted
    assert job["state"] == "running" and 5 < job["progress"] < 95, job
    # Half-way indeed: B has webvirt's volume and QEMU's incoming domain.
    assert disk.name in mig.volumes(mig.cb)
    assert [n for n, _, _ in mig.names(mig.cb)] == [name]
    assert Domain.objects.get(pk=row["id"]).migrating_to_id == mig.b.pk

    # Two moments, from the cancel request: the migration stops (A's libvirt job is over and the guest
    # goes on there), then the job ends, once libvirt has stopped B's incoming QEMU and webvirt has removed
    # B's volume.
    dom = mig.ca.lookupByName(name)
    assert dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    asked = time.monotonic()
    response = mig.api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200, response.json()
    stopped = None
    while (job := mig.api.get(f"/api/v1/jobs/{job_id}/").json())["state"] in ("queued", "running"):
        if stopped is None and dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE:
            stopped = time.monotonic() - asked
        assert time.monotonic() - asked < 30, job
        time.sleep(0.02)
    latency = time.monotonic() - asked
    stopped = latency if stopped is None else stopped
    assert job["state"] == "cancelled", job
    assert job["message"] == "Cancelled; what it had created was removed.", job

    # A keeps the guest running, untouched; B has no domain, and its volume is gone.
    assert mig.names(mig.ca) == [(name, True, True)]
    assert mig.names(mig.cb) == []
    assert disk.name not in mig.volumes(mig.cb)
    assert not (mig.two.b.pool_dir / disk.name).exists()
    assert Job.objects.get(pk=job_id).created_objects == []
    assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    assert guest_state(dom) == (200, "marker-cancel")
    assert disk_source(dom) == str(disk) and disk.exists()
    stayed = arrived(mig, row, name, host=mig.a)
    assert stayed.state == "running"
    RESULTS.append(f"cancel: the copy showed progress {started_after:.1f} s after POST ({found[0]}); after POST "
                   f"cancel the migration stopped in {stopped:.2f} s and the job ended, cancelled, in {latency:.2f} s")
    print(RESULTS[-1])
    assert stopped <= 2.0, f"the migration went on for {stopped:.2f} s after the cancel"
    # libvirt's part dominates: on B, stopping the incoming QEMU took 1.3-1.8 s here (qemuProcessKill).
    assert latency <= 5.0, f"the job ended {latency:.2f} s after the cancel"


# 3. The pre-flight check ---------------------------------------------------------------------------

@pytest.fixture
def silent_socket() -> Iterator[str]:
    """A UNIX socket that accepts connections and never answers: a host that hangs."""
    folder = tempfile.mkdtemp(prefix="wvm-hang-")
    path = f"{folder}/libvirt-sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    yield path
    server.close()
    Path(path).unlink(missing_ok=True)
    Path(folder).rmdir()


def test_the_check_names_every_problem_and_a_migration_with_problems_is_refused(
        mig: Mig, silent_socket: str) -> None:
    plain = mig.define(f"{PREFIX}plain", _standalone_disk(mig, f"{PREFIX}plain"))  # no base
    lonely = mig.standalone(mig.two.a.pool_dir, f"{PREFIX}lonely-base.qcow2")  # a base on A only
    orphan = mig.define(f"{PREFIX}orphan", mig.overlay(mig.two.a.pool_dir, f"{PREFIX}orphan.qcow2", lonely))
    shared = mig.define(f"{PREFIX}shared", _shared_disk(mig, f"{PREFIX}shared"))
    offline_copy = ("An offline migration moves {}'s definition, not its disks: copying them needs a live migration. "
                    "Start it and migrate it live, or use shared storage.")

    # What nothing keeps from moving: a shut-off domain on shared storage, offline.
    assert check(mig, shared, mig.b, "shared", live=False) == {"ok": True, "problems": [], "snapshots": 0}
    assert check(mig, plain, mig.b, "copy-all", live=True)["problems"] == [
        f"{PREFIX}plain is shut off: migrate it offline, or start it first."]

    # Live, for a shut-off domain.
    assert check(mig, shared, mig.b, "shared", live=True) == {
        "ok": False, "problems": [f"{PREFIX}shared is shut off: migrate it offline, or start it first."],
        "snapshots": 0}
    # The same host.
    assert check(mig, shared, mig.a, "shared", live=False) == {
        "ok": False, "problems": [f"{PREFIX}shared is already on a."], "snapshots": 0}
    # Offline with copied disks: libvirt would move the definition only, onto empty volumes.
    assert check(mig, plain, mig.b, "copy-all", live=False)["problems"] == [offline_copy.format(f"{PREFIX}plain")]
    # copy-inc for a disk without a base.
    assert check(mig, plain, mig.b, "copy-inc", live=True)["problems"] == [
        f"{PREFIX}plain is shut off: migrate it offline, or start it first.",
        "Disk vda is not a linked clone's overlay: copy all of it instead."]
    # copy-inc when the base is not on B.
    assert check(mig, orphan, mig.b, "copy-inc", live=True)["problems"] == [
        f"{PREFIX}orphan is shut off: migrate it offline, or start it first.",
        f"The base disk of vda ({PREFIX}lonely-base.qcow2 in pool mig-pool) is not on the destination: copy changes "
        "needs it there. Copy all of the disk instead."]

    # Snapshots cannot travel when the disks are copied; with shared storage they can.
    for row in (plain, shared):
        mig.ca.lookupByName(row["name"]).snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
    assert check(mig, plain, mig.b, "copy-all", live=True)["problems"] == [
        f"{PREFIX}plain is shut off: migrate it offline, or start it first.",
        f"{PREFIX}plain has 1 snapshot(s). They cannot travel when the disks are copied: delete them first, or "
        "migrate with shared storage (then they are carried over)."]
    assert check(mig, shared, mig.b, "shared", live=False) == {"ok": True, "problems": [], "snapshots": 1}

    # The destination in maintenance.
    response = mig.api.post(f"/api/v1/hosts/{mig.b.pk}/maintenance/", {"enabled": True}, format="json")
    assert response.status_code == 200 and response.json()["maintenance"] is True, response.json()
    in_maintenance = "b is in maintenance: nothing new is placed on it."
    assert check(mig, shared, mig.b, "shared", live=False) == {"ok": False, "problems": [in_maintenance],
                                                               "snapshots": 1}
    # ... so a migration is refused, with the sentences, and no job.
    for row, storage, live, problems in (
            (shared, "shared", False, [in_maintenance]),
            (orphan, "copy-inc", False, [in_maintenance, offline_copy.format(f"{PREFIX}orphan"),
                                         f"The base disk of vda ({PREFIX}lonely-base.qcow2 in pool mig-pool) is not "
                                         "on the destination: copy changes needs it there. Copy all of the disk "
                                         "instead."])):
        assert check(mig, row, mig.b, storage, live)["problems"] == problems
        response = mig.api.post(f"/api/v1/domains/{row['id']}/migrate/",
                                {"host": mig.b.pk, "storage": storage, "live": live}, format="json")
        assert response.status_code == 409, response.json()
        assert response.json() == {"error": " ".join(problems), "code": "state"}
    assert not Job.objects.exists()
    response = mig.api.post(f"/api/v1/hosts/{mig.b.pk}/maintenance/", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["maintenance"] is False
    assert check(mig, shared, mig.b, "shared", live=False)["ok"] is True

    # A destination that is down answers at once (no socket), or within a few seconds (it never answers);
    # known to be down, it answers faster still. Such hosts cannot be registered through the API (it
    # connects first), so their rows are written directly.
    for name, path, seconds, what in (("c", f"{mig.two.run_dir}/nowhere/libvirt-sock", 2.0, "no socket"),
                                      ("d", silent_socket, 12.0, "a socket that never answers")):
        down = Host.objects.create(name=name, uri=f"qemu+unix:///session?socket={path}", status=Host.ONLINE,
                                   migration_uri=TwoHosts.MIGRATION_URI)
        for attempt in range(2):
            started = time.monotonic()
            answer = check(mig, shared, down, "shared", live=False)
            took = time.monotonic() - started
            RESULTS.append(f"check against host {name} ({what}), attempt {attempt + 1}: {took:.2f} s: "
                           f"{answer['problems']}")
            print(RESULTS[-1])
            assert answer["ok"] is False and len(answer["problems"]) == 1, answer
            assert answer["problems"][0].startswith(f"{name}: "), answer
            assert took < (seconds if attempt == 0 else 2.0), f"the check took {took:.1f} s"
            down.refresh_from_db()
            assert down.status == Host.OFFLINE
    assert not Job.objects.exists()


# 4. Snapshots travel with shared storage -----------------------------------------------------------

def test_snapshots_travel_with_shared_storage(mig: Mig, job_worker: Any) -> None:
    name = f"{PREFIX}snaps"
    row = mig.boot(name, _shared_disk(mig, name), counter=401, marker="marker-snaps")
    dom = mig.ca.lookupByName(name)
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)  # internal, with the RAM
    with SerialShell(dom) as shell:
        set_memory_counter(shell, 402)
    dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>", 0)
    # s1 current, so "current" is not merely the newest.
    s1 = dom.snapshotLookupByName("s1").getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
    dom.snapshotCreateXML(s1, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT)
    with SerialShell(dom) as shell:
        set_memory_counter(shell, 403)
    assert dom.snapshotCurrent(0).getName() == "s1"

    assert check(mig, row, mig.b, "shared") == {"ok": True, "problems": [], "snapshots": 2}
    job, took = migrate(mig, row, storage="shared")
    succeeded(job)
    assert ", with its 2 snapshot(s)." in job["message"], job["message"]
    assert mig.names(mig.ca) == [] and mig.names(mig.cb) == [(name, True, True)]
    there = mig.cb.lookupByName(name)
    snaps = {s.getName(): s for s in there.listAllSnapshots(0)}
    assert sorted(snaps) == ["s1", "s2"]
    assert snaps["s2"].getParent().getName() == "s1"
    assert there.snapshotCurrent(0).getName() == "s1"
    assert guest_state(there) == (403, "marker-snaps")
    arrived(mig, row, name, host=mig.b)
    listed = mig.api.get(f"/api/v1/domains/{row['id']}/snapshots/").json()
    assert sorted(s["name"] for s in listed) == ["s1", "s2"], listed
    # They are usable there: reverting to s2 brings back its RAM.
    there.revertToSnapshot(snaps["s2"], 0)
    with SerialShell(there) as shell:
        assert read_memory_counter(shell) == 402
    RESULTS.append(f"live, shared, with 2 internal snapshots: job {took:.1f} s ({job['message']})")
    print(RESULTS[-1])


# 5. Offline ----------------------------------------------------------------------------------------

def test_a_shut_off_domain_moves_offline(mig: Mig, job_worker: Any) -> None:
    name = f"{PREFIX}offline"
    disk = _shared_disk(mig, name)
    row = mig.define(name, disk)
    assert check(mig, row, mig.b, "shared", live=False) == {"ok": True, "problems": [], "snapshots": 0}
    job, took = migrate(mig, row, live=False, storage="shared")
    succeeded(job)
    assert re.fullmatch(rf"{name} moved to b in [0-9.]+ s\.", job["message"]), job["message"]
    assert mig.names(mig.ca) == []
    assert mig.names(mig.cb) == [(name, False, True)]
    assert disk_source(mig.cb.lookupByName(name), libvirt.VIR_DOMAIN_XML_INACTIVE) == str(disk)
    assert arrived(mig, row, name, host=mig.b).state == "shutoff"
    RESULTS.append(f"offline, shared: job {took:.1f} s ({job['message']})")
    print(RESULTS[-1])


# 7. Administrators only ----------------------------------------------------------------------------

def test_an_owner_who_is_no_administrator_hears_404(mig: Mig, bob: Any) -> None:
    row = mig.define(f"{PREFIX}bobs", _shared_disk(mig, f"{PREFIX}bobs"))
    Domain.objects.filter(pk=row["id"]).update(owner=bob)
    as_bob = api_for(bob)
    assert as_bob.get(f"/api/v1/domains/{row['id']}/").status_code == 200  # his: he sees it
    answers = [
        as_bob.get(f"/api/v1/domains/{row['id']}/migrate/check/", {"host": mig.b.pk}),
        as_bob.post(f"/api/v1/domains/{row['id']}/migrate/", {"host": mig.b.pk}, format="json"),
        as_bob.post(f"/api/v1/domains/{row['id']}/migrate/", {}, format="json"),  # 404 before the input is read
        as_bob.post(f"/api/v1/hosts/{mig.a.pk}/evacuate/"),
        as_bob.post(f"/api/v1/hosts/{mig.b.pk}/maintenance/", {"enabled": True}, format="json"),
    ]
    assert [r.status_code for r in answers] == [404] * len(answers), [r.json() for r in answers]
    assert not Job.objects.exists()
    assert list(Host.objects.order_by("name").values_list("maintenance", flat=True)) == [False, False]
    assert Domain.objects.get(pk=row["id"]).host_id == mig.a.pk
    assert mig.names(mig.ca) == [(f"{PREFIX}bobs", False, True)] and mig.names(mig.cb) == []
