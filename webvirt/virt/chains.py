"""Which disk files belong to a domain once it has external snapshots, and which of them are still needed.

An external snapshot X makes a new overlay O_X on top of each disk; the disk as it was at X is O_X's
backing file. webvirt reverts such snapshots itself (libvirt 9.0 cannot), by starting a new overlay
on that backing file, which abandons the branch above it. So a domain's files form a tree, and after a
revert or a delete the files that nothing needs any more are removed:

- a domain *owns* its active disk files, every O_X and every O_X's backing file (what `remove` deletes);
- a file is *needed* while it is in the backing chain of an active disk or of some snapshot's state;
- the overlay a snapshot was taken with stays while the snapshot does (emptied once nothing needs what
  it holds), because its backing file is that snapshot's image.

Template bases are never owned for deleting: callers pass them in `keep`.
"""

from __future__ import annotations

import os

import libvirt

from webvirt.virt import errors
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshotxml import DomainSnapshot as SnapshotXML
from webvirt.virt.storagexml import Pool, Volume, new_volume

MAX_CHAIN = 64  # deeper than any chain webvirt makes; stops a loop in a corrupt chain
NOT_WORTH_FREEING = 1024**2  # an overlay holding less than this is as good as empty


def volume_at(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    """The volume at `path`, refreshing the pool of its folder once if libvirt has not seen the file yet
    (files that QEMU or libvirt's snapshot code make are unknown to the pool until a refresh)."""
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        pass
    folder = os.path.dirname(path)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        if Pool.from_string(pool.XMLDesc(0)).target_path == folder:
            try:
                pool.refresh(0)
                return conn.storageVolLookupByPath(path)
            except libvirt.libvirtError:
                return None
    return None


def backing_of(conn: libvirt.virConnect, path: str) -> str | None:
    vol = volume_at(conn, path)
    return Volume.from_string(vol.XMLDesc(0)).backing_path if vol is not None else None


def chain(conn: libvirt.virConnect, path: str | None) -> list[str]:
    """`path` and every file below it, top first."""
    found: list[str] = []
    while path and path not in found and len(found) < MAX_CHAIN:
        found.append(path)
        path = backing_of(conn, path)
    return found


def active_files(dom: libvirt.virDomain) -> dict[str, str]:
    """disk target -> the file the domain writes to now (its persistent definition)."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
    doc = DomainXML.from_string(dom.XMLDesc(flags))
    return {d.target_dev or "": d.source_file for d in doc.writable_disks if d.source_file}


def snapshot_docs(dom: libvirt.virDomain) -> list[SnapshotXML]:
    return [SnapshotXML.from_string(s.getXMLDesc(0)) for s in dom.listAllSnapshots(0)]


def owned(conn: libvirt.virConnect, dom: libvirt.virDomain) -> set[str]:
    files = set(active_files(dom).values())
    for doc in snapshot_docs(dom):
        for overlay in doc.external_files.values():
            files.add(overlay)
            below = backing_of(conn, overlay)
            if below:
                files.add(below)
    return files


def needed(conn: libvirt.virConnect, dom: libvirt.virDomain) -> set[str]:
    files: set[str] = set()
    for path in active_files(dom).values():
        files.update(chain(conn, path))
    for doc in snapshot_docs(dom):
        for overlay in doc.external_files.values():
            files.update(chain(conn, backing_of(conn, overlay)))
    return files


def collect(conn: libvirt.virConnect, dom: libvirt.virDomain, before: set[str], keep: frozenset[str]) -> list[str]:
    """Free the files the domain owned before an operation (`before`) or owns now that nothing needs
    any more, except `keep`; returns their paths.

    A file that nothing needs is deleted, unless it is the overlay a remaining snapshot was taken with:
    its path is how webvirt finds that snapshot's image, so it is only emptied (made again, blank, on
    the same image).
    """
    pointers = {path for doc in snapshot_docs(dom) for path in doc.external_files.values()}
    freed = []
    for path in sorted((before | owned(conn, dom)) - needed(conn, dom) - keep):
        vol = volume_at(conn, path)
        if vol is None or (path in pointers and vol.info()[2] < NOT_WORTH_FREEING):
            continue
        image = Volume.from_string(vol.XMLDesc(0)).backing_path if path in pointers else None
        pool = vol.storagePoolLookupByVolume()
        vol.delete(0)
        if image:
            new_overlay(conn, image, os.path.basename(path), pool)
        freed.append(path)
    return freed


def new_overlay(conn: libvirt.virConnect, image: str, name: str,
                pool: libvirt.virStoragePool | None = None) -> libvirt.virStorageVol:
    """A new, empty qcow2 overlay backed by `image`, in `pool` (by default `image`'s own)."""
    base = volume_at(conn, image)
    if base is None:
        raise VirtError(f"{image} is not a volume in any storage pool; webvirt cannot layer on it.", errors.STATE)
    base_doc = Volume.from_string(base.XMLDesc(0))
    overlay = new_volume(name, "qcow2", base_doc.capacity)
    overlay.set(permissions_mode="0600", backing_path=image, backing_format=base_doc.format or "raw")
    return (pool or base.storagePoolLookupByVolume()).createXML(overlay.to_string(), 0)
