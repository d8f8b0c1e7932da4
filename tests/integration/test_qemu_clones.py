"""Templates and clones on libvirtd with QEMU, made by a real Celery worker, through the REST API.

Linked and full clones boot; a linked clone's disk is an overlay of the template's; expiry removes
clones and their volumes; a worker killed in the middle of a clone job leaves nothing behind; quotas
hold under concurrent requests and a stranger can neither see nor clone. At most three guests run
at a time (the machines have two cores).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from lxml import etree

from tests.guest.guest import READY_MARKER
from tests.integration.conftest import define_template, pool_dir
from tests.integration.test_qemu_lifecycle import SerialPty, serial_pty_path
from webvirt.accounts.tokens import create_token
from webvirt.catalog import services as catalog
from webvirt.catalog.models import Quota, Template
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT = 90.0
RACERS = 4  # clone requests at once against a quota of one machine
# Up to three TCG guests booting together on two busy cores: a limit for a hung guest, not a speed
# figure (how fast clones boot is measured by bench/clone.py).
BOOT_TIMEOUT = 180.0


def wait_for_job(api, job_id: int, timeout: float = JOB_TIMEOUT) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}/").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s: {job}")


def clone(api, template: dict, **request) -> int:  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/templates/{template['id']}/clone/", request, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["job"]


def clones_of(api, pattern_prefix: str) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = api.get("/api/v1/domains/", {"search": pattern_prefix, "page_size": 100}).json()["results"]
    return sorted((r for r in rows if r["name"].startswith(pattern_prefix)), key=lambda r: r["name"])


def disk_volume(conn: libvirt.virConnect, name: str) -> libvirt.virStorageVol:
    xml = etree.fromstring(conn.lookupByName(name).XMLDesc(0).encode())
    return conn.storageVolLookupByPath(xml.xpath("./devices/disk[@device='disk']/source/@file")[0])


def backing_path(vol: libvirt.virStorageVol) -> str | None:
    return etree.fromstring(vol.XMLDesc(0).encode()).findtext("./backingStore/path")


def wait_for_boots(api, rows: list[dict]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Watch every guest's serial port at once; seconds until each printed the ready marker."""
    serials = {row["name"]: SerialPty(serial_pty_path(api, row["id"])) for row in rows}
    try:
        return {name: serial.wait_for(READY_MARKER, BOOT_TIMEOUT) for name, serial in serials.items()}
    finally:
        for serial in serials.values():
            serial.close()


def pool_volumes(pool: libvirt.virStoragePool) -> set[str]:
    pool.refresh(0)
    return {vol.name() for vol in pool.listAllVolumes(0)}


def domain_names(conn: libvirt.virConnect, prefix: str) -> set[str]:
    return {dom.name() for dom in conn.listAllDomains(0) if dom.name().startswith(prefix)}


def test_linked_and_full_clones_boot_and_expire_with_their_volumes(  # type: ignore[no-untyped-def]
        api, qemu_conn, tiny_template, scratch_pool, worker, clone_prefix):
    base = tiny_template["base"]

    # Two linked clones: overlays on the template's disk, started by the job, and they boot.
    job = wait_for_job(api, clone(api, tiny_template, count=2, name_pattern=f"{clone_prefix}l{{n}}",
                                  mode="linked", start=True))
    assert job["state"] == "succeeded", (job["error"], job["log"], worker.output())
    linked = clones_of(api, f"{clone_prefix}l")
    assert [r["name"] for r in linked] == [f"{clone_prefix}l1", f"{clone_prefix}l2"], (
        job, list(Domain.objects.values_list("name", "uuid", "state", "owner_id")), worker.output())
    for row in linked:
        vol = disk_volume(qemu_conn, row["name"])
        assert backing_path(vol) == base
        assert etree.fromstring(vol.XMLDesc(0).encode()).find("./target/format").get("type") == "qcow2"
        assert vol.info()[2] < 4 * 1024**2  # an overlay, not a copy of the 16 MB image
    boots = wait_for_boots(api, linked)
    print("linked clones booted in", {k: round(v, 1) for k, v in boots.items()})

    # One full clone: a copy with no backing file, and it boots too (three guests now run).
    job = wait_for_job(api, clone(api, tiny_template, count=1, name_pattern=f"{clone_prefix}f{{n}}",
                                  mode="full", start=True))
    assert job["state"] == "succeeded", (job["error"], job["log"])
    full = clones_of(api, f"{clone_prefix}f")
    assert [r["name"] for r in full] == [f"{clone_prefix}f1"]
    vol = disk_volume(qemu_conn, full[0]["name"])
    assert backing_path(vol) is None and vol.path() != base
    wait_for_boots(api, full)
    assert [r["state"] for r in linked + full if api.get(f"/api/v1/domains/{r['id']}/").json()["state"] == "running"]\
        == ["running"] * 3
    clone_volumes = pool_volumes(scratch_pool) - {f"{clone_prefix}base.qcow2"}
    assert len(clone_volumes) == 3

    # Expiry: their time is up; the expiry run removes the domains and their volumes, never the base.
    Domain.objects.filter(name__startswith=f"{clone_prefix}l").update(expires_at=timezone.now() - timedelta(1))
    Domain.objects.filter(name__startswith=f"{clone_prefix}f").update(expires_at=timezone.now() - timedelta(1))
    assert sorted(catalog.expire_due()) == [f"{clone_prefix}f1", f"{clone_prefix}l1", f"{clone_prefix}l2"]
    assert domain_names(qemu_conn, clone_prefix) == {f"{clone_prefix}src"}
    assert pool_volumes(scratch_pool) == {f"{clone_prefix}base.qcow2"}
    assert not Domain.objects.filter(name__in=[f"{clone_prefix}l1", f"{clone_prefix}f1"]).exists()


def test_a_worker_killed_in_the_middle_of_a_clone_job_leaves_no_orphan(  # type: ignore[no-untyped-def]
        api, qemu_conn, qemu_host, scratch_pool, live_stack, clone_prefix, monkeypatch):
    from tests import live

    # A template whose disk holds 384 MiB of data, so full copies take long enough to be interrupted.
    base = pool_dir(scratch_pool) / f"{clone_prefix}big.img"
    with base.open("wb") as out:
        chunk = b"\xa5" * (4 * 1024**2)
        for _ in range(96):
            out.write(chunk)
    template = define_template(api, qemu_host, scratch_pool, f"{clone_prefix}src", base, fmt="raw")
    worker = live.start_worker(live_stack.log_dir)
    try:
        job_id = clone(api, template, count=6, name_pattern=f"{clone_prefix}k{{n}}", mode="full", start=False)
        # Kill the worker once the job has finished one clone and has more copies in flight.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = Job.objects.get(pk=job_id)
            kinds = [o["kind"] for o in job.created_objects]
            if "domain" in kinds and kinds.count("volume") >= 3:
                break
            assert job.state in Job.ACTIVE, (job.state, job.error, job.log)
            time.sleep(0.05)
        else:
            raise AssertionError(f"the job never got going: {Job.objects.get(pk=job_id).log}")
        worker.signal(signal.SIGKILL)
        worker.proc.wait(10)
    finally:
        worker.stop()
    job.refresh_from_db()
    # (The pool cannot be refreshed while libvirtd still copies: look at its folder.)
    assert job.state == Job.RUNNING and len(list(pool_dir(scratch_pool).iterdir())) > 1
    half_made = [o["key"] for o in job.created_objects]

    assert job_id not in runner.reap_stale()  # its heartbeat is still fresh: not yet taken for dead

    # The reaper fails the job once its heartbeat is stale, and removes everything it created.
    monkeypatch.setattr(runner, "STALE_SECONDS", runner.HEARTBEAT_SECONDS + 1)
    deadline = time.monotonic() + 60
    while job_id not in runner.reap_stale():
        assert time.monotonic() < deadline, "the reaper never took the job"
        time.sleep(0.5)
    job.refresh_from_db()
    assert job.state == Job.FAILED and "worker" in job.error and job.reserved == {}
    assert job.created_objects == []
    assert pool_volumes(scratch_pool) == {base.name}, f"left behind of {half_made}"
    assert domain_names(qemu_conn, clone_prefix) == {f"{clone_prefix}src"}
    assert not Domain.objects.filter(name__startswith=f"{clone_prefix}k").exists()


def test_quotas_hold_under_concurrent_requests_and_a_stranger_sees_nothing(  # type: ignore[no-untyped-def]
        api, qemu_conn, tiny_template, scratch_pool, live_stack, worker, clone_prefix):
    users = get_user_model().objects
    bob, charlie = users.create_user("bob", "", "bob-password-1"), users.create_user("dave", "", "dave-password-1")
    Template.objects.get(pk=tiny_template["id"]).users.add(bob)
    Quota.objects.create(user=bob, instances=1)
    bob_token, charlie_token = create_token(bob)[1], create_token(charlie)[1]
    url = f"{live_stack.url}/api/v1/templates/{tiny_template['id']}/clone/"

    def post(token: str, body: dict) -> tuple[int, dict]:
        body = {"expires_at": (timezone.now() + timedelta(days=1)).isoformat(), **body}  # required of non-admins
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
            "Authorization": f"Token {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    # More than the quota at once: refused before any work.
    status, body = post(bob_token, {"count": 2, "name_pattern": f"{clone_prefix}b{{n}}", "start": False})
    assert status == 409 and "quota" in body["error"], body

    # Four requests of one clone each, at the same moment: exactly one fits, the others are told why.
    # (Only one clone is made, so this stays cheap. That overlapping requests really are serialised
    # by the quota lock is proved with 20 requests against a quota of 5 in tests/catalog/test_quotas.py.)
    answers: list[tuple[int, dict]] = []
    barrier = threading.Barrier(RACERS)

    def race(letter: str) -> None:
        barrier.wait(60)
        answers.append(post(bob_token, {"count": 1, "name_pattern": f"{clone_prefix}{letter}{{n}}", "start": False}))

    threads = [threading.Thread(target=race, args=(letter,)) for letter in "wxyz"[:RACERS]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(status for status, _body in answers) == [202] + [409] * (RACERS - 1), answers
    assert all(body["error"].startswith("That needs 1 instances, but your quota has 0 left (of 1).")
               for status, body in answers if status == 409), answers
    job_id = next(body["job"] for status, body in answers if status == 202)
    assert wait_for_job(api, job_id)["state"] == "succeeded"
    mine = Domain.objects.get(owner=bob, name__startswith=clone_prefix)
    assert domain_names(qemu_conn, clone_prefix) == {f"{clone_prefix}src", mine.name}

    # A stranger sees neither the template, nor bob's machine, nor bob's job, and cannot clone.
    status, body = post(charlie_token, {"count": 1, "name_pattern": f"{clone_prefix}c{{n}}", "start": False})
    assert status == 404, body
    stranger = api.__class__()
    stranger.credentials(HTTP_AUTHORIZATION=f"Token {charlie_token}")
    assert stranger.get("/api/v1/templates/").json()["results"] == []
    assert stranger.get(f"/api/v1/domains/{mine.pk}/").status_code == 404
    assert stranger.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert domain_names(qemu_conn, clone_prefix) == {f"{clone_prefix}src", mine.name}
