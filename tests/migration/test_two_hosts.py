"""The ``two_hosts`` fixture with plain libvirt-python: what each kind of live migration needs.

One tiny guest per test (tests/guest), emulated, booted on host A, with a value in its RAM
(``/tmp``) and a marker on its disk. After each migration the guest runs on the other host, was
not rebooted (the value in RAM is still there) and has its disk (the marker).

- shared storage (overlay in ``mig-shared``, the same path on both): managed direct (``migrate3``),
  peer-to-peer and peer-to-peer tunnelled (``migrateToURI3``), ping-pong between the hosts;
- copy-storage-all into B's own pool at another path (``DEST_XML`` changes the disk's path): the
  linked clone arrives flattened;
- copy-storage-inc of a linked clone whose template both hosts have: B's overlay must exist first;
- abortJob during a throttled copy-storage-all migration.

Each migration's wall-clock time and its downtime (from the destination's completed job stats)
are printed (``pytest -s``) and summed up at the end of the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import libvirt
import pytest

from tests.guest.guest import DISK_SIZE, READY_MARKER, ensure_image, make_overlay, tiny_domain_xml
from tests.guest.serial import (
    SerialShell,
    read_disk_marker,
    read_memory_counter,
    set_memory_counter,
    write_disk_marker,
)
from tests.migration.daemons import TwoHosts

pytestmark = pytest.mark.qemu

BOOT_TIMEOUT = 120  # emulated, on 2 busy cores: 6-20 s
MIGRATION_TIMEOUT = 120
MIB = 1024 * 1024
FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
RESULTS: list[str] = []


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if RESULTS:
        print("\n== migrations between two session daemons:\n  " + "\n  ".join(RESULTS))


@pytest.fixture(scope="module")
def conns(two_hosts: TwoHosts) -> Iterator[tuple[libvirt.virConnect, libvirt.virConnect]]:
    ca, cb = two_hosts.a.open(), two_hosts.b.open()
    yield ca, cb
    for conn in (ca, cb):
        conn.close()


@pytest.fixture(scope="module")
def template(two_hosts: TwoHosts) -> Path:
    """The tiny guest's image as a template both hosts have at the same path (here: one file).

    A copy, the daemons' user's: the one in .state/guest belongs to the system daemon's tests.
    """
    assert two_hosts.run_dir is not None
    folder = two_hosts.run_dir / "templates"
    folder.mkdir(mode=0o755)
    path = folder / "tiny.qcow2"
    shutil.copyfile(ensure_image(), path)
    path.chmod(0o644)
    two_hosts.give(folder)
    return path


@pytest.fixture
def cleanup(conns: tuple[libvirt.virConnect, libvirt.virConnect]) -> Iterator[Callable[[str], str]]:
    """Register a domain name; after the test it is destroyed and undefined on both hosts."""
    names: list[str] = []

    def register(name: str) -> str:
        names.append(name)
        return name

    yield register
    for conn in conns:
        for dom in conn.listAllDomains(0):
            if dom.name() in names:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()


# --- helpers ----------------------------------------------------------------------------------

def domains(conn: libvirt.virConnect) -> list[tuple[str, bool, bool]]:
    return [(dom.name(), bool(dom.isActive()), bool(dom.isPersistent())) for dom in conn.listAllDomains(0)]


def boot(conn: libvirt.virConnect, name: str, disk: Path, *, counter: int, marker: str) -> libvirt.virDomain:
    """Define and start the tiny guest on `disk`, wait for its shell, put `counter` in its RAM and
    `marker` on its disk."""
    dom = conn.defineXML(tiny_domain_xml(name, str(disk)))
    dom.create()
    with SerialShell(dom) as shell:
        shell.wait_for(READY_MARKER, BOOT_TIMEOUT)
        set_memory_counter(shell, counter)
        write_disk_marker(shell, marker)
    return dom


def check_guest(dom: libvirt.virDomain, *, counter: int, marker: str) -> None:
    """It runs, was not restarted (`counter` still in RAM) and sees `marker` on its disk."""
    assert dom.isActive()
    with SerialShell(dom) as shell:
        assert read_memory_counter(shell) == counter, "the guest was restarted: its RAM is new"
        assert read_disk_marker(shell) == marker


def disk_source(xml: str) -> str:
    source = ElementTree.fromstring(xml).find("./devices/disk[@device='disk']/source")
    assert source is not None
    return source.get("file", "")


def with_disk_path(dom: libvirt.virDomain, path: Path) -> str:
    """The domain's migratable XML with its disk's file replaced by `path` (for DEST_XML)."""
    root = ElementTree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
    source = root.find("./devices/disk[@device='disk']/source")
    assert source is not None
    source.set("file", str(path))
    return ElementTree.tostring(root, encoding="unicode")


def image_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


class Migration:
    """Runs one migration in a thread and samples the source's job stats while it runs."""

    def __init__(self, dom: libvirt.virDomain, call: Callable[[], Any]) -> None:
        self.dom, self._call = dom, call
        self.error: libvirt.libvirtError | None = None
        self.result: Any = None
        self.samples: list[dict[str, Any]] = []  # the source's jobStats, every 0.1 s
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self._call()
        except libvirt.libvirtError as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def start(self) -> Migration:
        self._thread.start()
        return self

    def sample(self) -> dict[str, Any]:
        try:
            stats = self.dom.jobStats(0)
        except libvirt.libvirtError:  # the source's domain is gone: the migration ended
            return {}
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
            self.samples.append(stats)
        return stats

    def wait(self, timeout: float = MIGRATION_TIMEOUT) -> Migration:
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            self.sample()
            self._thread.join(0.1)
        assert not self._thread.is_alive(), f"the migration did not end within {timeout} s"
        return self

    def disk_steps(self) -> list[int]:
        """The distinct disk_processed values seen, in MiB."""
        seen: list[int] = []
        for stats in self.samples:
            value = stats.get("disk_processed", 0) // MIB
            if value and value not in seen:
                seen.append(value)
        return seen


def migrate(label: str, dom: libvirt.virDomain, dconn: libvirt.virConnect,
            call: Callable[[], Any]) -> libvirt.virDomain:
    """Run `call` (a migration of `dom` to `dconn`), check that it ran, print what it took."""
    name = dom.name()
    job = Migration(dom, call).start().wait()
    if job.error is not None:
        raise job.error
    ddom = dconn.lookupByName(name)
    stats = ddom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    line = (f"{label}: {job.seconds:.2f} s in all, the job {stats.get('time_elapsed', '?')} ms, "
            f"downtime {stats.get('downtime', '?')} ms, memory {stats.get('memory_processed', 0) // MIB} MiB sent")
    if job.disk_steps():
        line += f", disk copied (MiB, as the source's job stats showed it): {job.disk_steps()}"
    print(line)
    RESULTS.append(line)
    return ddom


def copy_params(two_hosts: TwoHosts, dom: libvirt.virDomain, dest_disk: Path, **extra: Any) -> dict[str, Any]:
    """Parameters for a migration that copies disk vda to `dest_disk` on the destination."""
    xml = with_disk_path(dom, dest_disk)
    return {
        libvirt.VIR_MIGRATE_PARAM_URI: two_hosts.MIGRATION_URI,
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: two_hosts.LISTEN_ADDRESS,  # QEMU's and the NBD server's
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"],
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,  # the running domain's disk path on B
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: xml,  # without it B's persistent config keeps A's path
        **extra,
    }


def linked_clone(two_hosts: TwoHosts, template: Path, path: Path) -> Path:
    make_overlay(template, path)
    two_hosts.give(path)
    return path


def refresh_pools(conns: tuple[libvirt.virConnect, ...], name: str = TwoHosts.POOL) -> None:
    for conn in conns:
        conn.storagePoolLookupByName(name).refresh(0)


# --- tests ------------------------------------------------------------------------------------

def test_two_daemons_are_two_hosts(two_hosts: TwoHosts,
                                   conns: tuple[libvirt.virConnect, libvirt.virConnect]) -> None:
    print(f"two session daemons up in {two_hosts.started_in:.2f} s: {two_hosts.uris}")
    ca, cb = conns
    uuids = [ElementTree.fromstring(conn.getCapabilities()).findtext("./host/uuid") for conn in conns]
    assert uuids == [two_hosts.a.host_uuid, two_hosts.b.host_uuid]
    assert uuids[0] != uuids[1]  # libvirt refuses to migrate between hosts with the same UUID
    assert [conn.getURI() for conn in conns] == list(two_hosts.uris)
    pool_paths = {}
    for conn in conns:
        for pool in conn.listAllStoragePools(0):
            assert pool.isActive() and pool.autostart() and pool.isPersistent()
            pool_paths[(conn.getURI(), pool.name())] = ElementTree.fromstring(pool.XMLDesc(0)).findtext(
                "./target/path")
    a, b = two_hosts.uris
    assert pool_paths[(a, "mig-shared")] == pool_paths[(b, "mig-shared")] == str(two_hosts.shared_dir)
    assert pool_paths[(a, "mig-pool")] == str(two_hosts.a.pool_dir)
    assert pool_paths[(b, "mig-pool")] == str(two_hosts.b.pool_dir)
    assert two_hosts.a.pool_dir != two_hosts.b.pool_dir
    assert domains(ca) == domains(cb) == []


def test_live_migration_on_shared_storage(two_hosts: TwoHosts, template: Path,
                                          conns: tuple[libvirt.virConnect, libvirt.virConnect],
                                          cleanup: Callable[[str], str]) -> None:
    ca, cb = conns
    name = cleanup("mig-live")
    disk = linked_clone(two_hosts, template, two_hosts.shared_dir / "live.qcow2")
    dom = boot(ca, name, disk, counter=1, marker="shared-1")
    params = {libvirt.VIR_MIGRATE_PARAM_URI: two_hosts.MIGRATION_URI,
              libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: two_hosts.LISTEN_ADDRESS}

    # libvirt cannot tell a local directory from one every host mounts: it needs VIR_MIGRATE_UNSAFE.
    with pytest.raises(libvirt.libvirtError, match="Migration without shared storage is unsafe"):
        dom.migrate3(cb, params, FLAGS)
    flags = FLAGS | libvirt.VIR_MIGRATE_UNSAFE

    # 1. A -> B, managed direct: this client drives both daemons.
    dom = migrate("shared storage, A->B direct (migrate3)", dom, cb, lambda: dom.migrate3(cb, params, flags))
    assert domains(ca) == [] and domains(cb) == [(name, True, True)]
    check_guest(dom, counter=1, marker="shared-1")
    with SerialShell(dom) as shell:
        set_memory_counter(shell, 2)

    # 2. B -> A, peer-to-peer: B's daemon connects to A's socket itself.
    dom = migrate("shared storage, B->A peer-to-peer (migrateToURI3)", dom, ca,
                  lambda: dom.migrateToURI3(two_hosts.a.uri, params, flags | libvirt.VIR_MIGRATE_PEER2PEER))
    assert domains(cb) == [] and domains(ca) == [(name, True, True)]
    check_guest(dom, counter=2, marker="shared-1")
    with SerialShell(dom) as shell:
        set_memory_counter(shell, 3)

    # 3. A -> B, peer-to-peer tunnelled: the data goes through the daemons' connection, so no URI
    # (libvirt: "migration URI is not supported by tunnelled migration") and no listen address.
    dom = migrate("shared storage, A->B peer-to-peer tunnelled", dom, cb,
                  lambda: dom.migrateToURI3(two_hosts.b.uri, {},
                                            flags | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TUNNELLED))
    assert domains(ca) == [] and domains(cb) == [(name, True, True)]
    check_guest(dom, counter=3, marker="shared-1")
    assert disk_source(dom.XMLDesc(0)) == str(disk)


def test_copy_storage_all_into_the_destinations_pool(
        two_hosts: TwoHosts, template: Path, conns: tuple[libvirt.virConnect, libvirt.virConnect],
        cleanup: Callable[[str], str]) -> None:
    ca, cb = conns
    name = cleanup("mig-all")
    src_disk = linked_clone(two_hosts, template, two_hosts.a.pool_dir / "all.qcow2")
    dest_disk = two_hosts.b.pool_dir / "all.qcow2"
    refresh_pools(conns)
    dom = boot(ca, name, src_disk, counter=11, marker="copy-all-1")
    params = copy_params(two_hosts, dom, dest_disk)
    flags = FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_DISK

    # B's volume does not exist: libvirt creates it, because its directory is a pool on B.
    dom = migrate("copy-storage-all, A->B into B's pool (migrate3)", dom, cb,
                  lambda: dom.migrate3(cb, params, flags))
    assert domains(ca) == [] and domains(cb) == [(name, True, True)]
    check_guest(dom, counter=11, marker="copy-all-1")
    assert disk_source(dom.XMLDesc(0)) == str(dest_disk)
    assert disk_source(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == str(dest_disk)
    info = image_info(dest_disk)
    assert "backing-filename" not in info, "copy-storage-all flattens a linked clone"
    assert info["virtual-size"] == DISK_SIZE == image_info(src_disk)["virtual-size"]
    assert src_disk.exists()  # the source's disk is left where it was


def test_copy_storage_inc_of_a_linked_clone(
        two_hosts: TwoHosts, template: Path, conns: tuple[libvirt.virConnect, libvirt.virConnect],
        cleanup: Callable[[str], str]) -> None:
    ca, cb = conns
    name = cleanup("mig-inc")
    src_disk = linked_clone(two_hosts, template, two_hosts.a.pool_dir / "inc.qcow2")
    dest_disk = two_hosts.b.pool_dir / "inc.qcow2"
    refresh_pools(conns)
    dom = boot(ca, name, src_disk, counter=21, marker="copy-inc-1")
    params = copy_params(two_hosts, dom, dest_disk)
    flags = FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_INC

    # Unlike copy-storage-all, libvirt does not create B's overlay, pool or not.
    with pytest.raises(libvirt.libvirtError, match="pre-creation of storage targets for incremental"):
        dom.migrate3(cb, params, flags)
    assert domains(ca) == [(name, True, True)] and domains(cb) == []
    # B's overlay on the same template, created by B's daemon in its pool (so its user owns it).
    cb.storagePoolLookupByName(two_hosts.POOL).createXML(
        f"""<volume><name>{dest_disk.name}</name><capacity unit='bytes'>{DISK_SIZE}</capacity>
  <target><format type='qcow2'/></target>
  <backingStore><path>{template}</path><format type='qcow2'/></backingStore></volume>""", 0)

    dom = migrate("copy-storage-inc, A->B onto B's own overlay (migrate3)", dom, cb,
                  lambda: dom.migrate3(cb, params, flags))
    assert domains(ca) == [] and domains(cb) == [(name, True, True)]
    check_guest(dom, counter=21, marker="copy-inc-1")
    assert disk_source(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == str(dest_disk)
    info = image_info(dest_disk)
    assert info["backing-filename"] == str(template), "copy-storage-inc keeps the linked clone"
    assert info["actual-size"] < 4 * MIB  # only the overlay was copied, not the template's 16 MiB


def test_abort_during_copy_storage_all(
        two_hosts: TwoHosts, template: Path, conns: tuple[libvirt.virConnect, libvirt.virConnect],
        cleanup: Callable[[str], str]) -> None:
    ca, cb = conns
    name = cleanup("mig-abort")
    src_disk = linked_clone(two_hosts, template, two_hosts.a.pool_dir / "abort.qcow2")
    dest_disk = two_hosts.b.pool_dir / "abort.qcow2"
    refresh_pools(conns)
    dom = boot(ca, name, src_disk, counter=31, marker="abort-1")
    flags = FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_DISK
    # 1 MiB/s: the disk copy (QEMU's mirror job, which the bandwidth limits too) takes ~30 s.
    slow = copy_params(two_hosts, dom, dest_disk, **{libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 1})

    job = Migration(dom, lambda: dom.migrate3(cb, slow, flags)).start()
    deadline = time.monotonic() + 60
    while not job.sample().get("disk_processed") and time.monotonic() < deadline:
        time.sleep(0.1)
    progress = job.samples[-1] if job.samples else {}
    assert progress.get("disk_processed"), f"no disk copy progress seen: {job.samples[-1:]}"
    started_abort = time.monotonic()
    dom.abortJob()
    job.wait()
    abort_took = time.monotonic() - started_abort
    assert job.error is not None and "canceled by client" in str(job.error)

    # A keeps the guest running, untouched; B has no domain at all.
    assert domains(ca) == [(name, True, True)] and domains(cb) == []
    assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    check_guest(dom, counter=31, marker="abort-1")
    # ... but the volume libvirt created on B for it stays, partly written, a volume of B's pool.
    assert dest_disk.exists()
    left = image_info(dest_disk)
    refresh_pools((cb,))
    assert dest_disk.name in cb.storagePoolLookupByName(two_hosts.POOL).listVolumes()
    line = (f"abortJob at disk_processed {progress['disk_processed'] // MIB}/{progress['disk_total'] // MIB} MiB "
            f"after {job.seconds:.1f} s: the migration failed with {str(job.error)!r} {abort_took:.2f} s later; "
            f"left on B: {dest_disk.name} ({left['format']}, virtual {left['virtual-size'] // MIB} MiB, "
            f"{left['actual-size'] / MIB:.1f} MiB allocated, backing {left.get('backing-filename')})")
    print(line)
    RESULTS.append(line)

    # Trying again (at full speed) reuses that volume: libvirt skips creating an existing one.
    fast = copy_params(two_hosts, dom, dest_disk)
    dom = migrate("copy-storage-all again after the abort, onto the leftover volume", dom, cb,
                  lambda: dom.migrate3(cb, fast, flags))
    assert domains(ca) == [] and domains(cb) == [(name, True, True)]
    check_guest(dom, counter=31, marker="abort-1")
