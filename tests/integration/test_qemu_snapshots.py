"""Snapshots of real guests through the REST API, on libvirtd with QEMU (qemu:///system), run by a real
Celery worker; after each step libvirt and the files in the pool are asked whether they agree.

- an internal snapshot with memory brings back the guest's RAM and disk on revert;
- an external, disk-only snapshot is reverted by webvirt itself (libvirt 9.0 cannot): the domain is
  off afterwards, its disk is as it was, the abandoned overlay is freed as webvirt.virt.chains says,
  and the template's base is never written;
- resetting a linked clone to its template drops its data and its snapshots, on the same overlay path;
- removing clones with snapshots of either kind leaves none of their files and no snapshot metadata.

The guests are linked clones of the tiny guest (tests/guest), driven through their serial shell
(tests/guest/serial.py): a marker in a reserved sector of the disk, a counter in RAM.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.guest.guest import DISK_RESERVED_BYTES, DISK_RESERVED_OFFSET
from tests.guest.serial import (
    SerialShell,
    read_disk_marker,
    read_memory_counter,
    set_memory_counter,
    write_disk_marker,
)
from tests.integration.conftest import QEMU_URI, pool_dir
from tests.integration.test_qemu_clones import clone, clones_of, wait_for_job
from webvirt.snapshots.models import SnapshotSize
from webvirt.virt.chains import NOT_WORTH_FREEING

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

BOOT_TIMEOUT = 40.0  # the tiny guest boots in 5-7 s under TCG; two at once take longer
JOB_TIMEOUT = 60.0
SNAPSHOT_DIR = Path("/var/lib/libvirt/qemu/snapshot")


# Helpers -----------------------------------------------------------------------------------------

@pytest.fixture
def snapshot_cleanup(clone_prefix: str, scratch_pool: libvirt.virStoragePool) -> Iterator[str]:
    """clone_prefix, but the snapshots' metadata of the test's domains goes first: libvirt does not
    undefine a domain that still has snapshots, and clone_prefix's cleanup would leave it defined.
    The scratch pool is destroyed here too, on a new connection: scratch_pool's own cleanup uses the
    session's, which fails quietly once other work has restarted libvirtd."""
    yield clone_prefix
    conn = libvirt.open(QEMU_URI)
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(clone_prefix):
            continue
        try:
            if dom.isActive():
                dom.destroy()
            for snap in dom.listAllSnapshots(0):
                try:
                    snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
                except libvirt.libvirtError:
                    pass
        except libvirt.libvirtError:
            pass
    try:
        conn.storagePoolLookupByName(scratch_pool.name()).destroy()
    except libvirt.libvirtError:
        pass
    conn.close()


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    """A connection of the test's own: the session's goes stale if libvirtd is restarted by other work."""
    connection = libvirt.open(QEMU_URI)
    yield connection
    connection.close()


def linked_clones(api, template: dict, pattern: str, count: int = 1, start: bool = True) -> list[dict]:  # type: ignore[no-untyped-def]
    job = wait_for_job(api, clone(api, template, count=count, name_pattern=pattern + "{n}", mode="linked",
                                  start=start), JOB_TIMEOUT)
    assert job["state"] == "succeeded", (job["error"], job["log"])
    rows = clones_of(api, pattern)
    assert len(rows) == count, rows
    return rows


def shell_of(dom: libvirt.virDomain) -> SerialShell:
    """A shell on the running guest's serial port, once the guest answers (it may still be booting)."""
    shell = SerialShell(dom)
    try:
        seconds = shell.wait_for_shell(BOOT_TIMEOUT)
    except BaseException:
        shell.close()
        raise
    print(f"{dom.name()}: the shell answered {seconds:.1f} s after the serial port was opened")
    return shell


def start(api, conn: libvirt.virConnect, row: dict) -> SerialShell:  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/domains/{row['id']}/start/")
    assert response.status_code == 200, response.json()
    return shell_of(conn.lookupByName(row["name"]))


def run_job(api, response, expect_state: str = "succeeded") -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 202, response.json()
    job = wait_for_job(api, response.json()["job"], JOB_TIMEOUT)
    assert job["state"] == expect_state, f"{job['title']}: {job['error']}\n" + "\n".join(job["log"])
    return job


def take(api, row: dict, **request) -> dict:  # type: ignore[no-untyped-def]
    """POST a snapshot; the 202's body after its job has succeeded."""
    response = api.post(f"/api/v1/domains/{row['id']}/snapshots/", request, format="json")
    run_job(api, response)
    return response.json()


def revert(api, row: dict, name: str) -> dict:  # type: ignore[no-untyped-def]
    return run_job(api, api.post(f"/api/v1/domains/{row['id']}/snapshots/{name}/revert/"))


def listed(api, row: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    response = api.get(f"/api/v1/domains/{row['id']}/snapshots/")
    assert response.status_code == 200, response.json()
    return response.json()


def disk_path(dom: libvirt.virDomain, flags: int = libvirt.VIR_DOMAIN_XML_INACTIVE) -> str:
    return str(etree.fromstring(dom.XMLDesc(flags).encode()).xpath("./devices/disk[@device='disk']/source/@file")[0])


def image_info(path: str) -> dict:
    """qemu-img info; -U since a running QEMU holds the file's lock."""
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def own_data(path: str) -> int:
    """Bytes of guest data the qcow2 file itself holds (not its backing chain)."""
    out = subprocess.run(["qemu-img", "map", "-U", "--output=json", "-f", "qcow2", path], check=True,
                         capture_output=True, text=True).stdout
    return sum(e["length"] for e in json.loads(out) if e["depth"] == 0 and e["data"])


def fill_reserved(shell: SerialShell) -> None:
    """Write all of the disk's reserved range (1 MiB past the filesystem) with 'x'."""
    block = 4096
    shell.run(f"dd if=/dev/zero bs={block} count={DISK_RESERVED_BYTES // block} 2>/dev/null | tr '\\000' x "
              f"| dd of=/dev/vda bs={block} seek={DISK_RESERVED_OFFSET // block} conv=fsync 2>/dev/null "
              "&& flush-disk", timeout=60)


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_in(folder: Path, prefix: str) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(prefix)}


def state(dom: libvirt.virDomain) -> int:
    return dom.state()[0]


# Tests -------------------------------------------------------------------------------------------

def test_an_internal_snapshot_with_memory_brings_back_ram_and_disk(  # type: ignore[no-untyped-def]
        api, conn, tiny_template, worker, snapshot_cleanup):
    prefix = snapshot_cleanup
    [row] = linked_clones(api, tiny_template, f"{prefix}i")
    dom = conn.lookupByName(row["name"])
    overlay = disk_path(dom)
    with shell_of(dom) as shell:
        set_memory_counter(shell, 1)
        write_disk_marker(shell, "before")
        assert (read_memory_counter(shell), read_disk_marker(shell)) == (1, "before")

        taken = take(api, row, name="s1", description="counter 1, disk before", memory=True)
        assert (taken["kind"], taken["reason"]) == ("internal", "every disk is qcow2 and the firmware is BIOS")

        # libvirt and the file agree: an internal snapshot with memory, inside the clone's overlay.
        snap = dom.snapshotLookupByName("s1", 0)
        doc = etree.fromstring(snap.getXMLDesc(0).encode())
        assert (doc.findtext("state"), doc.find("memory").get("snapshot")) == ("running", "internal")
        assert [s["name"] for s in image_info(overlay).get("snapshots", [])] == ["s1"]
        assert state(dom) == libvirt.VIR_DOMAIN_RUNNING
        [info] = listed(api, row)
        assert {k: info[k] for k in ("name", "parent", "description", "state", "kind", "memory", "current", "depth")} \
            == {"name": "s1", "parent": None, "description": "counter 1, disk before", "state": "running",
                "kind": "internal", "memory": True, "current": True, "depth": 0}
        assert info["size_bytes"] is not None and info["size_bytes"] >= 0

        set_memory_counter(shell, 2)
        write_disk_marker(shell, "after")
        assert (read_memory_counter(shell), read_disk_marker(shell)) == (2, "after")

    revert(api, row, "s1")
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING
    with shell_of(dom) as shell:
        assert read_memory_counter(shell) == 1
        assert read_disk_marker(shell) == "before"
    assert listed(api, row)[0]["current"] is True
    assert disk_path(dom) == overlay


def test_an_external_snapshot_is_reverted_by_webvirt_and_frees_what_nothing_needs(  # type: ignore[no-untyped-def]
        api, conn, tiny_template, scratch_pool, worker, snapshot_cleanup):
    prefix = snapshot_cleanup
    base = tiny_template["base"]
    base_sum = sha256(base)
    folder = pool_dir(scratch_pool)
    [row] = linked_clones(api, tiny_template, f"{prefix}e")
    name = row["name"]
    dom = conn.lookupByName(name)
    own = disk_path(dom)  # the clone's overlay on the template's base
    with shell_of(dom) as shell:
        write_disk_marker(shell, "one")
        taken = take(api, row, name="e1", kind="external", memory=False)
        assert (taken["kind"], taken["reason"]) == ("external", "you asked for an external snapshot")

        # A new overlay on the clone's own, written to from now on (live and persistent definitions).
        e1 = str(folder / f"{name}-vda.e1.qcow2")
        assert disk_path(dom) == disk_path(dom, 0) == e1
        assert image_info(e1)["backing-filename"] == own
        doc = etree.fromstring(dom.snapshotLookupByName("e1", 0).getXMLDesc(0).encode())
        assert (doc.findtext("state"), doc.find("memory").get("snapshot")) == ("disk-snapshot", "no")
        [info] = listed(api, row)
        assert (info["kind"], info["memory"], info["current"], info["state"]) == ("external", False, True,
                                                                                  "disk-snapshot")
        assert info["size_bytes"] is not None
        fill_reserved(shell)  # so e1's overlay holds more than NOT_WORTH_FREEING
        write_disk_marker(shell, "two")
        assert read_disk_marker(shell) == "two"
    scratch_pool.refresh(0)
    assert scratch_pool.storageVolLookupByName(Path(e1).name).info()[2] >= NOT_WORTH_FREEING

    # webvirt's revert: forced off, a new overlay on the snapshot's image (the clone's overlay).
    revert(api, row, "e1")
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF
    assert dom.snapshotCurrent(0).getName() == "e1"
    assert [(s["name"], s["current"]) for s in listed(api, row)] == [("e1", True)]
    first = disk_path(dom)
    assert first not in (own, e1) and Path(first).parent == folder
    assert image_info(first)["backing-filename"] == own
    # What is left in the pool: the base, the clone's overlay (e1's image), e1's overlay (the pointer
    # to that image: kept, but emptied since it held 1 MiB or more) and the new active overlay.
    assert files_in(folder, name) == {Path(p).name for p in (own, e1, first)}
    assert own_data(e1) == 0 and image_info(e1)["backing-filename"] == own
    with start(api, conn, row) as shell:
        assert read_disk_marker(shell) == "one"
        write_disk_marker(shell, "three")

    # Again: the first new overlay is abandoned, and as nothing needs it, deleted.
    revert(api, row, "e1")
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF
    second = disk_path(dom)
    assert second not in (own, e1, first)
    assert files_in(folder, name) == {Path(p).name for p in (own, e1, second)}
    with start(api, conn, row) as shell:
        assert read_disk_marker(shell) == "one"

    # Deleting the snapshot: its overlay goes; the domain keeps running on the chain it has.
    job = run_job(api, api.delete(f"/api/v1/domains/{row['id']}/snapshots/e1/"))
    print("delete job log:", job["log"])
    assert dom.listAllSnapshots(0) == [] and listed(api, row) == []
    assert files_in(folder, name) == {Path(p).name for p in (own, second)}
    assert image_info(second)["backing-filename"] == own
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING
    dom.destroy()
    assert sha256(base) == base_sum


def test_reset_to_template_drops_data_and_snapshots_on_the_same_overlay(  # type: ignore[no-untyped-def]
        api, conn, tiny_template, scratch_pool, worker, snapshot_cleanup):
    prefix = snapshot_cleanup
    base = tiny_template["base"]
    base_sum = sha256(base)
    folder = pool_dir(scratch_pool)
    [row] = linked_clones(api, tiny_template, f"{prefix}r")
    name = row["name"]
    dom = conn.lookupByName(name)
    own = disk_path(dom)
    with shell_of(dom) as shell:
        write_disk_marker(shell, "mine")
        # Running and no memory asked for: auto picks external, and says why.
        taken = take(api, row, name="r1")
        assert taken["kind"] == "external" and "memory" in taken["reason"], taken
        write_disk_marker(shell, "mine-too")
    assert len(files_in(folder, name)) == 2  # the overlay and r1's

    job = run_job(api, api.post(f"/api/v1/domains/{row['id']}/reset-to-template/"))
    print("reset job log:", job["log"])
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF
    assert dom.listAllSnapshots(0) == [] and listed(api, row) == []
    assert disk_path(dom) == own
    assert image_info(own)["backing-filename"] == base
    assert files_in(folder, name) == {Path(own).name}
    assert own_data(own) == 0
    with start(api, conn, row) as shell:
        assert read_disk_marker(shell) == ""
    dom.destroy()
    assert sha256(base) == base_sum


def test_removing_clones_with_snapshots_leaves_no_file_and_no_metadata(  # type: ignore[no-untyped-def]
        api, conn, tiny_template, scratch_pool, worker, snapshot_cleanup):
    prefix = snapshot_cleanup
    base = tiny_template["base"]
    base_sum = sha256(base)
    folder = pool_dir(scratch_pool)
    ext, inner = linked_clones(api, tiny_template, f"{prefix}d", count=2)
    for row in (ext, inner):
        with shell_of(conn.lookupByName(row["name"])) as shell:
            write_disk_marker(shell, f"of-{row['name']}")
    # Two external snapshots on one (a chain of overlays), two internal ones with memory on the other.
    assert [take(api, ext, name=n, kind="external")["kind"] for n in ("x1", "x2")] == ["external"] * 2
    assert [take(api, inner, name=n, memory=True)["kind"] for n in ("i1", "i2")] == ["internal"] * 2
    assert [(s["name"], s["depth"]) for s in listed(api, ext)] == [("x1", 0), ("x2", 1)]
    assert [(s["name"], s["depth"]) for s in listed(api, inner)] == [("i1", 0), ("i2", 1)]
    assert len(files_in(folder, ext["name"])) == 3 and len(files_in(folder, inner["name"])) == 1
    assert SnapshotSize.objects.filter(domain_id=inner["id"]).count() == 2
    uuids = [conn.lookupByName(row["name"]).UUIDString() for row in (ext, inner)]

    for row in (ext, inner):
        response = api.post(f"/api/v1/domains/{row['id']}/remove/")
        assert response.status_code == 200, response.json()
        print(f"removed {row['name']}: {response.json()}")

    for row, uuid in zip((ext, inner), uuids, strict=True):
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByUUIDString(uuid)
        assert files_in(folder, row["name"]) == set()
        assert not (SNAPSHOT_DIR / row["name"]).exists() or not any((SNAPSHOT_DIR / row["name"]).iterdir())
        assert api.get(f"/api/v1/domains/{row['id']}/").status_code == 404
    assert SnapshotSize.objects.filter(domain_id=inner["id"]).count() == 0
    scratch_pool.refresh(0)
    assert {v.name() for v in scratch_pool.listAllVolumes(0)} == {Path(base).name}
    assert sha256(base) == base_sum
