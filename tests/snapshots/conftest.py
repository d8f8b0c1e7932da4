"""Fixtures for snapshots on libvirt's test driver through the daemon.

The test driver takes internal snapshots (of a running domain always with its memory), lists,
reverts and deletes them; it refuses disk-only (external) ones, so those are checked up to the plan.
Every domain and volume made here carries a random name and is removed after the test, its
snapshots' metadata with it: libvirt does not undefine a domain that still has snapshots otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest

from tests.catalog.conftest import base_volume, cleanup_clones, template, template_source  # noqa: F401
from tests.people import api_for, unique
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.jobs import runner
from webvirt.jobs.models import Job

POOL = "default-pool"
BIOS = "<os><type arch='x86_64'>hvm</type></os>"
EFI_FIRMWARE = "<os firmware='efi'><type arch='x86_64'>hvm</type></os>"
PFLASH = ("<os><type arch='x86_64'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd"
          "</loader><nvram>/var/lib/libvirt/qemu/nvram/{name}_VARS.fd</nvram></os>")


def remove_domain(conn: libvirt.virConnect, name: str) -> None:
    """Stop and undefine `name` with its snapshots' metadata, whatever state a test left it in."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    if dom.isPersistent():
        # The only undefine flag about snapshots the test driver knows (it refuses NVRAM and checkpoints).
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


@pytest.fixture
def snap_domain(test_conn: libvirt.virConnect, test_host: Any) -> Iterator[Callable[..., Domain]]:
    """Define a domain whose one disk is a 64 MiB volume in the test driver's pool; its cached row.

    `disk_format` is the volume's format (qcow2 holds internal snapshots, raw does not), `os` the
    domain's <os> (BIOS by default), `start` starts it, `owner` gives it to a user.
    """
    made: list[tuple[str, str]] = []

    def make(*, disk_format: str = "qcow2", os: str = BIOS, start: bool = False, owner: Any = None,
             memory_mib: int = 128) -> Domain:
        name = unique("snap")
        pool = test_conn.storagePoolLookupByName(POOL)
        vol = pool.createXML(f"<volume><name>{name}.{disk_format}</name><capacity unit='MiB'>64</capacity>"
                             f"<target><format type='{disk_format}'/></target></volume>", 0)
        made.append((name, vol.path()))
        dom = test_conn.defineXML(f"""<domain type='test'><name>{name}</name>
          <memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>{os.format(name=name)}
          <devices><disk type='file' device='disk'><driver name='qemu' type='{disk_format}'/>
            <source file='{vol.path()}'/><target dev='vda' bus='virtio'/></disk></devices></domain>""")
        if start:
            dom.create()
        sync_host(test_host)
        row = Domain.objects.get(host=test_host, uuid=dom.UUIDString())
        if owner is not None:
            Domain.objects.filter(pk=row.pk).update(owner=owner)
            row.refresh_from_db()
        return row

    yield make
    for name, path in made:
        remove_domain(test_conn, name)
        try:
            test_conn.storageVolLookupByPath(path).delete(0)
        except libvirt.libvirtError:
            pass  # removed with its domain


@pytest.fixture
def libvirt_domain(test_conn: libvirt.virConnect) -> Callable[[Domain], libvirt.virDomain]:
    """The domain behind a cached row, as libvirt sees it now."""
    return lambda row: test_conn.lookupByUUIDString(row.uuid)


def snapshot_names(dom: libvirt.virDomain) -> list[str]:
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def take(user: Any, row: Domain, **body: Any) -> Any:
    """Ask for a snapshot through the API as `user`; the response."""
    return api_for(user).post(f"/api/v1/domains/{row.pk}/snapshots/", body, format="json")


def run(response: Any) -> Job:
    """Run the job a request started, here and now; returns the finished Job row."""
    assert response.status_code == 202, response.json()
    runner.execute(response.json()["job"])
    return Job.objects.get(pk=response.json()["job"])


def taken(user: Any, row: Domain, name: str, **body: Any) -> Job:
    """Take snapshot `name` and run its job to the end; the job must succeed."""
    job = run(take(user, row, name=name, **body))
    assert job.state == Job.SUCCEEDED, job.error
    return job


@pytest.fixture
def clone_snapshots(test_conn: libvirt.virConnect, cleanup_clones: list[str]) -> Iterator[None]:  # noqa: F811
    """Clones may end a test with snapshots, which cleanup_clones's plain undefine refuses: this
    removes them first (it is torn down before the fixture it depends on)."""
    yield
    for dom in test_conn.listAllDomains(0):
        if any(dom.name().startswith(prefix) for prefix in cleanup_clones):
            remove_domain(test_conn, dom.name())


@pytest.fixture
def snapshotted_source(template_source: Domain, test_conn: libvirt.virConnect) -> Iterator[Domain]:  # noqa: F811
    """template_source, whose snapshots are deleted before it is undefined (a plain undefine refuses them)."""
    yield template_source
    try:
        dom = test_conn.lookupByUUIDString(template_source.uuid)
    except libvirt.libvirtError:
        return
    while dom.snapshotNum(0):
        for leaf in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES):
            leaf.delete(0)
