"""Changing storage volumes (create, delete, resize, clone) and streaming their contents. No Django here.

Pools and reading what a host has are in webvirt.virt.storage; volume XML in webvirt.virt.storagexml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

import libvirt

from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.storage import (
    VolumeInfo,
    backing_users,
    check_space,
    disk_users,
    pool_lookup,
    refuse_bases,
    volume_info,
    volume_lookup,
)
from webvirt.virt.storagexml import MIB, Pool, Volume, check_name, volume_xml
from webvirt.virt.streams import finished

# Volumes: changing ------------------------------------------------------------------------------

def create_volume(conn: libvirt.virConnect, pool_uuid: str, name: str, fmt: str, capacity_mib: int) -> VolumeInfo:
    pool = pool_lookup(conn, pool_uuid)
    if not pool.isActive():
        raise VirtError(f"Pool {pool.name()} is not running; start it first.", errors.STATE)
    xml = volume_xml(name, fmt, capacity_mib)
    errors.refuse_taken(lambda: pool.storageVolLookupByName(name.strip()),
                        f"Pool {pool.name()} already has a volume named '{name}'.")
    check_space(pool, capacity_mib * MIB, f"A {capacity_mib:,} MiB volume")
    vol = pool.createXML(xml, 0)
    return volume_info(pool, vol, {}, {})


def _users_of(conn: libvirt.virConnect, vol: libvirt.virStorageVol) -> tuple[list[str], list[str]]:
    path = vol.path()
    return sorted(set(disk_users(conn).get(path, []))), sorted(backing_users(conn).get(path, []))


def delete_volume(conn: libvirt.virConnect, pool_uuid: str, name: str, bases: dict[str, str]) -> str:
    """Delete a volume; refused while a domain uses it, a linked clone is layered on it, or it is a
    template's base (`bases`: path -> template name)."""
    vol = volume_lookup(conn, pool_uuid, name)
    refuse_bases([vol.path()], bases)
    domains, clones = _users_of(conn, vol)
    if domains:
        raise VirtError(f"Volume {name} is a disk of {', '.join(domains)}. Detach it or remove "
                        f"{'that domain' if len(domains) == 1 else 'those domains'} first.", errors.STATE)
    if clones:
        raise VirtError(f"Volume {name} is the backing file of {', '.join(clones)}: deleting it would break "
                        f"{'that linked clone' if len(clones) == 1 else 'those linked clones'}.", errors.STATE)
    path = vol.path()
    vol.delete(0)
    return str(path)


def resize_volume(conn: libvirt.virConnect, pool_uuid: str, name: str, capacity_mib: int) -> VolumeInfo:
    """Grow a volume to `capacity_mib`. Shrinking is refused: it would cut off the data at its end."""
    pool = pool_lookup(conn, pool_uuid)
    vol = volume_lookup(conn, pool_uuid, name)
    _type, capacity, _allocation = vol.info()
    new = capacity_mib * MIB
    if new < capacity:
        raise VirtError(f"Volume {name} is {capacity / MIB:,.0f} MiB; shrinking it would destroy data at its "
                        "end, so webvirt only grows volumes.", errors.INVALID)
    if new == capacity:
        raise VirtError(f"Volume {name} is already {capacity_mib:,} MiB.", errors.INVALID)
    running = {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
    busy = [n for n in _users_of(conn, vol)[0] if n in running]
    if busy:
        raise VirtError(f"Volume {name} is a disk of running {', '.join(busy)}; shut it down before resizing.",
                        errors.STATE)
    fmt = Volume.from_string(vol.XMLDesc(0)).format
    if fmt != "qcow2":
        check_space(pool, new - capacity, f"Growing {name} by {(new - capacity) / MIB:,.0f} MiB")
    vol.resize(new, 0)
    return volume_info(pool, vol, {}, {})


def clone_plan(conn: libvirt.virConnect, pool_uuid: str, name: str, new_name: str) -> tuple[str, int]:
    """Check that `name` can be copied to `new_name` in the same pool; returns the new path and the size."""
    pool = pool_lookup(conn, pool_uuid)
    vol = volume_lookup(conn, pool_uuid, name)
    new_name = check_name(new_name, "volume")
    errors.refuse_taken(lambda: pool.storageVolLookupByName(new_name),
                        f"Pool {pool.name()} already has a volume named '{new_name}'.")
    _type, capacity, allocation = vol.info()
    check_space(pool, allocation, f"A copy of {name}")
    target = Pool.from_string(pool.XMLDesc(0)).target_path or ""
    return f"{target.rstrip('/')}/{new_name}", capacity


def clone_volume(conn: libvirt.virConnect, pool_uuid: str, name: str, new_name: str) -> VolumeInfo:
    """A full copy of a volume in the same pool (libvirt's createXMLFrom): may take long; run it in a job."""
    pool = pool_lookup(conn, pool_uuid)
    vol = volume_lookup(conn, pool_uuid, name)
    doc = Volume.from_string(vol.XMLDesc(0))
    copy = Volume.new(name=check_name(new_name, "volume"), capacity=doc.capacity, format=doc.format or "raw")
    new = pool.createXMLFrom(copy.to_string(), vol, 0)
    return volume_info(pool, new, {}, {})


# Streams ----------------------------------------------------------------------------------------

CHUNK = 1024 * 1024


def download(conn: libvirt.virConnect, pool_uuid: str, name: str, out: BinaryIO,
             on_progress: Callable[[int, int], None]) -> int:
    """Stream a volume's bytes into `out` through libvirt; returns how many were written.

    `on_progress(done, total)` is called after each chunk; total is the volume file's physical size.
    On any failure the stream is aborted.
    """
    vol = volume_lookup(conn, pool_uuid, name)
    try:
        total = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
    except libvirt.libvirtError:
        total = vol.info()[1]
    done = 0
    with finished(conn.newStream(0)) as stream:
        vol.download(stream, 0, 0, 0)
        while True:
            chunk = stream.recv(CHUNK)
            if not chunk:
                break
            if isinstance(chunk, int):
                raise VirtError("libvirt interrupted the download stream.", errors.OTHER)
            out.write(chunk)
            done += len(chunk)
            on_progress(done, max(total, done))
    return done
