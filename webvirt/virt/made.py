"""What a job made on a host, by its key: a domain by UUID, a volume by path.

A job tracks each object it makes under such a key; these functions look for one before it is made
and remove it when the job fails, is cancelled or loses its worker.
"""

from __future__ import annotations

import time

import libvirt

from webvirt.virt import domains, errors

DOMAIN = "domain"
VOLUME = "volume"
BUILD_WAIT_SECONDS = 50  # below the 60 s the caller gives a removal


def exists(conn: libvirt.virConnect, kind: str, key: str) -> bool:
    """Is there something under `key` already?"""
    if kind == DOMAIN:
        return errors.found(lambda: conn.lookupByUUIDString(key))
    if kind == VOLUME:
        return errors.found(lambda: conn.storageVolLookupByPath(key))
    return False


def remove(conn: libvirt.virConnect, kind: str, key: str) -> bool:
    """Remove what is under `key`; False when nothing was there (already gone, or never made)."""
    if kind == DOMAIN:
        return _remove_domain(conn, key)
    if kind == VOLUME:
        return _remove_volume(conn, key)
    return False


def _remove_domain(conn: libvirt.virConnect, uuid: str) -> bool:
    if not exists(conn, DOMAIN, uuid):
        return False
    # Its volumes are tracked (and removed) separately, so that shared bases are never touched.
    domains.remove(conn, uuid, delete_volumes=False)
    return True


def _remove_volume(conn: libvirt.virConnect, path: str) -> bool:
    if not exists(conn, VOLUME, path):
        # The pool may not have noticed a half-written file yet: refresh pools once and retry.
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                pool.refresh(0)
            except libvirt.libvirtError:
                continue
        if not exists(conn, VOLUME, path):
            return False
    _delete_when_built(conn.storageVolLookupByPath(path))
    return True


def _delete_when_built(vol: libvirt.virStorageVol) -> None:
    """Delete a volume; one still being written (a full copy whose job lost its worker goes on in
    libvirtd) cannot be deleted until the copy ends, so wait for that rather than leave it behind."""
    deadline = time.monotonic() + BUILD_WAIT_SECONDS
    while True:
        try:
            vol.delete(0)
            return
        except libvirt.libvirtError as exc:
            if "being allocated" not in (exc.get_error_message() or "") or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
