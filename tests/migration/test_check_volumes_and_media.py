"""The pre-flight check looks at disks given as a pool's volume (`<disk type='volume'>`) and at CD-ROMs,
on two real libvirt hosts (tests/migration/daemons.py). Shut-off domains only: the check reads
definitions and storage, nothing needs to run.

The volume disk vdb and the CD-ROM sda sit beside the boot disk vda (a volume in the shared pool, which
both hosts see at the same path).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass

import libvirt
import pytest

from tests.guest.guest import tiny_domain_xml
from tests.migration.conftest import PREFIX, _remove_test_objects
from tests.migration.daemons import TwoHosts
from webvirt.virt import migration as virt

MIB = 1024 * 1024


@dataclass
class Hosts:
    two: TwoHosts
    ca: libvirt.virConnect
    cb: libvirt.virConnect
    name: str  # this test's domain and volume names start with it

    def volume(self, conn: libvirt.virConnect, pool: str, name: str, fmt: str = "qcow2") -> str:
        """A new 8 MiB volume `name` in `pool` on that host; its path."""
        found = conn.storagePoolLookupByName(pool)
        found.refresh(0)
        return str(found.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>8</capacity>"
                                   f"<target><format type='{fmt}'/></target></volume>", 0).path())

    def define(self, devices: str) -> libvirt.virDomain:
        """A shut-off domain on A: its boot disk in the shared pool, and `devices` beside it."""
        disk = self.volume(self.ca, TwoHosts.SHARED_POOL, f"{self.name}vda.qcow2")
        xml = tiny_domain_xml(self.name, disk, vnc=False).replace("</devices>", f"{devices}</devices>")
        return self.ca.defineXML(xml)

    def problems(self, dom: libvirt.virDomain, storage: str, live: bool = False) -> list[str]:
        return virt.check(self.ca, self.cb, dom.UUIDString(), storage, live).problems


@pytest.fixture
def hosts(two_hosts: TwoHosts) -> Iterator[Hosts]:
    ca, cb = two_hosts.a.open(), two_hosts.b.open()
    found = Hosts(two=two_hosts, ca=ca, cb=cb, name=f"{PREFIX}chk-{uuidlib.uuid4().hex[:6]}-")
    yield found
    for conn in (ca, cb):
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(PREFIX):
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
        _remove_test_objects(conn)
        conn.close()


def volume_disk(pool: str, volume: str, target: str = "vdb") -> str:
    return (f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source pool='{pool}' volume='{volume}'/><target dev='{target}' bus='virtio'/></disk>")


def cdrom(iso: str) -> str:
    return (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{iso}'/>"
            "<target dev='sda' bus='sata'/><readonly/></disk>")


def only_on_a(hosts: Hosts) -> str:
    """A running pool on A that B does not have (in this run's folder, which goes with two_hosts); its name."""
    name = f"{hosts.name}only-a"
    assert hosts.two.run_dir is not None
    folder = hosts.two.run_dir / name
    folder.mkdir()
    hosts.two.give(folder)
    hosts.ca.storagePoolCreateXML(f"<pool type='dir'><name>{name}</name><target><path>{folder}</path></target>"
                                  "</pool>", 0)
    return name


# Volume disks, shared storage ---------------------------------------------------------------------

def test_a_volume_disk_in_the_shared_pool_passes(hosts: Hosts) -> None:
    hosts.volume(hosts.ca, TwoHosts.SHARED_POOL, f"{hosts.name}data.qcow2")
    dom = hosts.define(volume_disk(TwoHosts.SHARED_POOL, f"{hosts.name}data.qcow2"))
    plan = virt.check(hosts.ca, hosts.cb, dom.UUIDString(), virt.SHARED, False)
    assert plan.problems == []
    assert sorted(d.target for d in plan.disks) == ["vda", "vdb"]  # the volume disk is part of the plan


def test_a_volume_disk_whose_volume_the_destination_lacks_is_named(hosts: Hosts) -> None:
    vol = f"{hosts.name}data.qcow2"
    hosts.volume(hosts.ca, TwoHosts.POOL, vol)
    dom = hosts.define(volume_disk(TwoHosts.POOL, vol))
    assert hosts.problems(dom, virt.SHARED) == [
        f"Pool {TwoHosts.POOL} on the destination has no volume {vol} (disk vdb). Shared storage needs the same "
        "pool and volume on both hosts; otherwise copy the disks."]


def test_a_volume_of_the_same_name_in_another_folder_is_not_shared_storage(hosts: Hosts) -> None:
    vol = f"{hosts.name}data.qcow2"
    here, there = hosts.volume(hosts.ca, TwoHosts.POOL, vol), hosts.volume(hosts.cb, TwoHosts.POOL, vol)
    assert here != there  # mig-pool is a different folder on each host
    dom = hosts.define(volume_disk(TwoHosts.POOL, vol))
    assert hosts.problems(dom, virt.SHARED) == [
        f"Volume {vol} of pool {TwoHosts.POOL} is {there} on the destination but {here} here: another file, not "
        "shared storage, so disk vdb would not be the same disk there. Copy the disks instead."]


def test_a_volume_disk_in_a_pool_the_destination_lacks_is_named(hosts: Hosts) -> None:
    pool = only_on_a(hosts)
    hosts.volume(hosts.ca, pool, "data.qcow2")
    dom = hosts.define(volume_disk(pool, "data.qcow2"))
    assert hosts.problems(dom, virt.SHARED) == [
        f"The destination has no running storage pool named {pool} for disk vdb ({pool}/data.qcow2). Shared "
        "storage needs the same pool and volume on both hosts; otherwise copy the disks."]


# Volume disks, copied -----------------------------------------------------------------------------

def test_a_copied_volume_disk_needs_its_pool_on_the_destination(hosts: Hosts) -> None:
    pool = only_on_a(hosts)
    hosts.volume(hosts.ca, pool, "data.qcow2")
    dom = hosts.define(volume_disk(pool, "data.qcow2"))
    problems = hosts.problems(dom, virt.COPY_ALL, live=True)
    assert f"The destination has no running storage pool named {pool} for disk vdb." in problems


def test_a_copied_volume_disk_lands_in_the_pool_of_the_same_name(hosts: Hosts) -> None:
    vol = f"{hosts.name}data.qcow2"
    hosts.volume(hosts.ca, TwoHosts.POOL, vol)
    dom = hosts.define(volume_disk(TwoHosts.POOL, vol))
    plan = virt.check(hosts.ca, hosts.cb, dom.UUIDString(), virt.COPY_ALL, True)
    [vdb] = [d for d in plan.disks if d.target == "vdb"]
    assert (vdb.pool, vdb.dest) == (TwoHosts.POOL, str(hosts.two.b.pool_dir / vol))
    assert not [p for p in plan.problems if "vdb" in p]
    # A volume of that name already there is refused, as for a file disk.
    hosts.volume(hosts.cb, TwoHosts.POOL, vol)
    assert f"Pool {TwoHosts.POOL} on the destination already has a volume {vol}." in hosts.problems(
        dom, virt.COPY_ALL, live=True)


# CD-ROMs -------------------------------------------------------------------------------------------

def test_a_cdrom_whose_iso_the_destination_lacks_is_named_with_what_to_do(hosts: Hosts) -> None:
    iso = hosts.volume(hosts.ca, TwoHosts.POOL, f"{hosts.name}install.iso", fmt="raw")
    dom = hosts.define(cdrom(iso))
    expected = (f"CD-ROM sda holds the ISO {iso}, but the destination has no such file in a storage pool. Put the "
                "ISO there at the same path, or eject it first.")
    for storage in virt.STORAGE_MODES:  # copying the disks does not copy a CD-ROM
        assert expected in hosts.problems(dom, storage, live=storage != virt.SHARED), storage
    assert hosts.problems(dom, virt.SHARED) == [expected]


def test_a_cdrom_whose_iso_the_destination_has_at_the_same_path_passes(hosts: Hosts) -> None:
    iso = hosts.volume(hosts.ca, TwoHosts.SHARED_POOL, f"{hosts.name}install.iso", fmt="raw")
    dom = hosts.define(cdrom(iso))
    assert hosts.problems(dom, virt.SHARED) == []


def test_an_empty_cdrom_drive_needs_nothing(hosts: Hosts) -> None:
    dom = hosts.define("<disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>")
    assert hosts.problems(dom, virt.SHARED) == []
