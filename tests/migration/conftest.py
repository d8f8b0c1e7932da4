"""Two libvirt "hosts" on this machine for migration tests: ``two_hosts`` (see daemons.py).

Started once per test session, the first time a test asks for it, and stopped at its end, also
when tests failed. What a run that crashed left behind is removed by the next start. Needs root,
as ``make test`` runs: the daemons run as the user ``webvirt-mig``, created if missing.

For the tests that go through webvirt (the API, its jobs): ``bases`` puts the tiny guest's image
where the storage modes need it, once per session; ``mig`` registers both daemons as webvirt hosts
``a`` and ``b`` through the API, and afterwards removes every domain and volume the test made on
either (names start with ``PREFIX``); ``job_worker`` is a Celery worker and an event watcher for the
jobs (migrate, evacuate) that such a test starts.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.guest.guest import ensure_image, make_overlay, tiny_domain_xml
from tests.guest.serial import SerialShell, set_memory_counter, write_disk_marker
from tests.migration.daemons import TwoHosts

PREFIX = "wvm-"  # every domain and volume a test makes; the bases do not carry it
BASE = "base.qcow2"  # the tiny guest's image, the same volume name in mig-pool on both hosts and in mig-shared
BOOT_TIMEOUT = 60.0  # the tiny guest boots in 5-7 s under TCG; several at once on 2 cores take longer
JOB_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def two_hosts() -> Iterator[TwoHosts]:
    hosts = TwoHosts()
    try:
        hosts.start()  # stops what it started if it fails
    except Exception as exc:
        pytest.fail(f"could not start two libvirt session daemons: {exc}")
    try:
        yield hosts
    finally:
        hosts.stop()


@dataclass
class Bases:
    """The tiny guest's image as a base: in mig-pool on A and on B (the same volume name, for copy-inc)
    and in mig-shared (for overlays on shared storage)."""

    a: Path
    b: Path
    shared: Path


@pytest.fixture(scope="session")
def bases(two_hosts: TwoHosts) -> Bases:
    image = ensure_image()
    found = Bases(a=two_hosts.a.pool_dir / BASE, b=two_hosts.b.pool_dir / BASE, shared=two_hosts.shared_dir / BASE)
    for path in (found.a, found.b, found.shared):
        shutil.copyfile(image, path)
        path.chmod(0o644)
        two_hosts.give(path)
    for daemon in two_hosts.hosts:
        conn = daemon.open()
        try:
            for pool in (TwoHosts.POOL, TwoHosts.SHARED_POOL):
                conn.storagePoolLookupByName(pool).refresh(0)
        finally:
            conn.close()
    return found


@dataclass
class Mig:
    """Both daemons as webvirt hosts (rows `a`, `b`), the test's own libvirt connections to them (`ca`,
    `cb`), and helpers to put the tiny guest on them."""

    api: Any
    two: TwoHosts
    bases: Bases
    a: Any
    b: Any
    ca: libvirt.virConnect
    cb: libvirt.virConnect

    # Disks -------------------------------------------------------------------------------------

    def overlay(self, folder: Path, name: str, base: Path) -> Path:
        """A linked clone's disk: a qcow2 overlay `name` in `folder` on `base`, the daemons' user's."""
        path = make_overlay(base, folder / name)
        self.two.give(path)
        self.refresh()
        return path

    def standalone(self, folder: Path, name: str) -> Path:
        """A standalone qcow2 copy of the tiny guest's image (no backing file)."""
        path = folder / name
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(self.bases.a), str(path)], check=True)
        self.two.give(path)
        self.refresh()
        return path

    def refresh(self) -> None:
        for conn in (self.ca, self.cb):
            for pool in (TwoHosts.POOL, TwoHosts.SHARED_POOL):
                conn.storagePoolLookupByName(pool).refresh(0)

    def volumes(self, conn: libvirt.virConnect, pool: str = TwoHosts.POOL) -> list[str]:
        """The volumes of `pool` as libvirt lists them after a refresh."""
        found = conn.storagePoolLookupByName(pool)
        found.refresh(0)
        return sorted(found.listVolumes())

    # Domains -----------------------------------------------------------------------------------

    def define(self, name: str, disk: Path, **extra: Any) -> dict:
        """Define the tiny guest on host A through the API; its row as the API answers it."""
        assert name.startswith(PREFIX)
        response = self.api.post("/api/v1/domains/", {"host": self.a.pk, "xml": tiny_domain_xml(name, str(disk))},
                                 format="json")
        assert response.status_code == 201, response.json()
        return dict(response.json())

    def start(self, row: dict) -> None:
        response = self.api.post(f"/api/v1/domains/{row['id']}/start/")
        assert response.status_code == 200, response.json()
        assert response.json()["state"] == "running"

    def boot(self, name: str, disk: Path, *, counter: int, marker: str) -> dict:
        """Define and start the tiny guest on A through the API, wait for its shell, keep `counter` in its RAM
        and `marker` on its disk."""
        row = self.define(name, disk)
        self.start(row)
        self.prepare(self.ca.lookupByName(name), counter=counter, marker=marker)
        return row

    @staticmethod
    def prepare(dom: libvirt.virDomain, *, counter: int, marker: str) -> None:
        """Once the started guest's shell answers (it may have booted already), keep `counter` in its RAM and
        `marker` on its disk."""
        started = time.monotonic()
        with SerialShell(dom) as shell:
            shell.wait_for_shell(BOOT_TIMEOUT)
            set_memory_counter(shell, counter)
            write_disk_marker(shell, marker)
        print(f"{dom.name()}: its shell answered, counter {counter} and marker {marker} set, "
              f"{time.monotonic() - started:.1f} s later")

    @staticmethod
    def names(conn: libvirt.virConnect) -> list[tuple[str, bool, bool]]:
        """(name, running, persistent) of the test's domains on a host."""
        return sorted((d.name(), bool(d.isActive()), bool(d.isPersistent())) for d in conn.listAllDomains(0)
                      if d.name().startswith(PREFIX))

    # Jobs --------------------------------------------------------------------------------------

    def wait_for_job(self, job_id: int, timeout: float = JOB_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = dict(self.api.get(f"/api/v1/jobs/{job_id}/").json())
            if job["state"] not in ("queued", "running"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not finish in {timeout:g} s: {job}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def job_worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Celery worker and an event watcher (tests/live.py), once per module: the same processes as
    tests/conftest.py's `worker` (without the web server, which these tests do not use), started once
    because they read everything from the database and Redis and keep nothing of one test for the next.
    Tests using it need committed data (`django_db(transaction=True)`)."""
    from tests import live

    log_dir = tmp_path_factory.mktemp("stack")
    watcher = live.start_watcher(log_dir)
    worker = live.start_worker(log_dir)
    yield worker
    worker.stop()
    watcher.stop()


def _register(api: Any, name: str, uri: str) -> Any:
    from webvirt.hosts.models import Host

    response = api.post("/api/v1/hosts/", {"name": name, "uri": uri}, format="json")
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    response = api.patch(f"/api/v1/hosts/{pk}/", {"migration_uri": TwoHosts.MIGRATION_URI}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["migration_uri"] == TwoHosts.MIGRATION_URI
    return Host.objects.get(pk=pk)


@pytest.fixture
def mig(api: Any, two_hosts: TwoHosts, bases: Bases) -> Iterator[Mig]:
    """Host rows `a` and `b` registered through the API; afterwards every domain (with its snapshots'
    metadata) and volume named PREFIX... is removed from both daemons."""
    from webvirt.hosts.connections import manager

    ca, cb = two_hosts.a.open(), two_hosts.b.open()
    env = Mig(api=api, two=two_hosts, bases=bases, a=_register(api, "a", two_hosts.a.uri),
              b=_register(api, "b", two_hosts.b.uri), ca=ca, cb=cb)
    try:
        yield env
    finally:
        for host in (env.a, env.b):
            host.refresh_from_db()
            manager.drop(host.target().key)
        for conn in (ca, cb):
            _remove_test_objects(conn)
            conn.close()


def _remove_test_objects(conn: libvirt.virConnect) -> None:
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(PREFIX):
            continue
        try:
            if dom.isActive():
                dom.destroy()
            for snap in dom.listAllSnapshots(0):
                snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            if dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError as exc:
            print(f"cleanup: {dom.name()}: {exc}")
    for name in (TwoHosts.POOL, TwoHosts.SHARED_POOL):
        pool = conn.storagePoolLookupByName(name)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(PREFIX):
                try:
                    vol.delete(0)
                except libvirt.libvirtError as exc:  # the other host removed it from the shared folder
                    print(f"cleanup: {vol.path()}: {exc}")
