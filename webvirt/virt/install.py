"""New machines installed from an ISO (what virt-install does), and ISO uploads into pools.

The checks run before any work starts, so bad input is refused with a sentence and nothing is left
half-made; the calls that make things are the job's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import libvirt
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.clone import NAME_RE
from webvirt.virt.domains import refuse_taken_name
from webvirt.virt.errors import VirtError
from webvirt.virt.storagexml import new_volume
from webvirt.virt.streams import finished

CHUNK = 1024 * 1024
VOLUME_NAME_RE = NAME_RE
BOOT_DEVICES = ("cdrom", "hd", "network")
GRAPHICS = ("vnc", "spice", "none")


@dataclass
class PoolInfo:
    name: str
    kind: str
    path: str
    available: int


def _active(kind: str, name: str, lookup: Callable[[str], Any]) -> Any:
    """A pool or network by name that must exist and run, or a sentence saying which it does not."""
    try:
        found = lookup(name)
    except libvirt.libvirtError:
        raise VirtError(f"There is no {kind} named '{name}' on this host.", errors.NOT_FOUND) from None
    if not found.isActive():
        raise VirtError(f"The {kind} '{name}' is not active; start it first.", errors.STATE)
    return found


def pool_info(conn: libvirt.virConnect, name: str) -> PoolInfo:
    pool = _active("storage pool", name, conn.storagePoolLookupByName)
    root = etree.fromstring(pool.XMLDesc(0).encode())
    pool.refresh(0)
    return PoolInfo(name=name, kind=root.get("type", ""), path=root.findtext("./target/path") or "",
                    available=pool.info()[3])


def volume_path(info: PoolInfo, name: str) -> str:
    """The path a new volume `name` gets in the pool (known before it exists, so a job can track it)."""
    return f"{info.path.rstrip('/')}/{name}"


def check_volume_name(conn: libvirt.virConnect, info: PoolInfo, name: str) -> None:
    if not VOLUME_NAME_RE.match(name):
        raise VirtError(f"'{name}' is not a valid volume name: use letters, digits, '.', '_' and '-'.",
                        errors.INVALID)
    errors.refuse_taken(lambda: conn.storagePoolLookupByName(info.name).storageVolLookupByName(name),
                        f"A volume named '{name}' already exists in pool {info.name}. Choose another name.")


def check_space(info: PoolInfo, size: int, what: str) -> None:
    if size > info.available:
        raise VirtError(f"Pool {info.name} has {info.available / 1024**3:.1f} GiB free; {what} needs "
                        f"{size / 1024**3:.1f} GiB. Choose another pool or a smaller size.", errors.CONFLICT)


def check_upload(conn: libvirt.virConnect, pool: str, name: str, size: int) -> PoolInfo:
    """May a file of `size` bytes be uploaded into `pool` as volume `name`?"""
    info = pool_info(conn, pool)
    check_volume_name(conn, info, name)
    if size <= 0:
        raise VirtError("The uploaded file is empty.", errors.INVALID)
    check_space(info, size, "the file")
    return info


def check_install(conn: libvirt.virConnect, *, name: str, pool: str, disk_bytes: int, iso: str,
                  network: str) -> PoolInfo:
    """Everything about a new machine that can be known before making it; its disk pool's details."""
    if not NAME_RE.match(name):
        raise VirtError(f"'{name}' is not a valid domain name: use letters, digits, '.', '_' and '-' "
                        "(at most 63 characters, starting with a letter or digit).", errors.INVALID)
    refuse_taken_name(conn, name)
    info = pool_info(conn, pool)
    check_volume_name(conn, info, disk_name(name))
    check_space(info, disk_bytes, "the new disk")
    if iso:
        try:
            conn.storageVolLookupByPath(iso)
        except libvirt.libvirtError:
            raise VirtError(f"There is no ISO volume at {iso}; upload it into a pool first.",
                            errors.NOT_FOUND) from None
    if network:
        _active("network", network, conn.networkLookupByName)
    return info


def disk_name(domain: str) -> str:
    return f"{domain}-vda.qcow2"


def create_disk(conn: libvirt.virConnect, pool: str, name: str, capacity: int) -> str:
    """An empty qcow2 volume (compat 1.1) for a new machine's disk; its path."""
    return str(conn.storagePoolLookupByName(pool).createXML(new_volume(name, "qcow2", capacity).to_string(), 0).path())


def create_upload_volume(conn: libvirt.virConnect, pool: str, name: str, size: int) -> libvirt.virStorageVol:
    """The empty raw volume an upload fills."""
    return conn.storagePoolLookupByName(pool).createXML(new_volume(name, "raw", size).to_string(), 0)


def upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol, source: BinaryIO, size: int,
           on_progress: Callable[[int], None]) -> str:
    """Stream `size` bytes of `source` into `vol`; its path.

    Errors on the libvirt side surface at `finish()`; on any failure the stream is aborted (the
    caller removes the volume).
    """
    sent = 0
    with finished(conn.newStream(0)) as stream:
        vol.upload(stream, 0, size, 0)
        while sent < size:
            chunk = source.read(min(CHUNK, size - sent))
            if not chunk:
                raise VirtError(f"The uploaded file ended after {sent} of {size} bytes.", errors.INVALID)
            view = memoryview(chunk)
            while view:
                written = stream.send(view.tobytes())
                view = view[written:]
            sent += len(chunk)
            on_progress(sent)
    return str(vol.path())


def choices(conn: libvirt.virConnect) -> dict[str, list[str]]:
    """What a new machine can use on this host: active pools, ISO volumes in them, active networks."""
    pools, isos = [], []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        pools.append(pool.name())
        try:
            pool.refresh(0)
            isos += [vol.path() for vol in pool.listAllVolumes(0) if vol.name().lower().endswith(".iso")]
        except libvirt.libvirtError:
            continue
    networks = [net.name() for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)]
    return {"pools": sorted(pools), "isos": sorted(isos), "networks": sorted(networks)}
