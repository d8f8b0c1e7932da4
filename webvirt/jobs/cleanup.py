"""Removing what a job created on a host: used when a job fails, is cancelled or loses its worker."""

from __future__ import annotations

import time
from collections.abc import Callable

import libvirt

from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.virt import domains

BUILD_WAIT_SECONDS = 50  # below remove_object's 60 s timeout


def remove_object(obj: dict) -> bool:
    """Remove one tracked object; False when it was not there (already gone, or never made)."""
    host = Host.objects.filter(pk=obj["host"]).first()
    if host is None:
        return False
    if obj["kind"] == "domain":
        from webvirt.domains.models import Domain

        removed = call(host, lambda conn: _remove_domain(conn, obj["key"]), timeout=60)
        Domain.objects.filter(host=host, uuid=obj["key"]).delete()
        return removed
    if obj["kind"] == "volume":
        return call(host, lambda conn: _remove_volume(conn, obj["key"]), timeout=60)
    return False


def object_exists(obj: dict) -> bool:
    """Is there already something under a tracked object's key (a domain UUID, a volume path)?"""
    host = Host.objects.get(pk=obj["host"])
    if obj["kind"] == "domain":
        return call(host, lambda conn: _lookup(conn.lookupByUUIDString, obj["key"]))
    if obj["kind"] == "volume":
        return call(host, lambda conn: _lookup(conn.storageVolLookupByPath, obj["key"]))
    return False


def _lookup(find: Callable[[str], object], key: str) -> bool:
    try:
        find(key)
    except libvirt.libvirtError:
        return False
    return True


def _remove_domain(conn: libvirt.virConnect, uuid: str) -> bool:
    try:
        conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return False
    # Its volumes are tracked (and removed) separately, so that shared bases are never touched.
    domains.remove(conn, uuid, delete_volumes=False)
    return True


def _remove_volume(conn: libvirt.virConnect, path: str) -> bool:
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        # The pool may not have noticed a half-written file yet: refresh pools once and retry.
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                pool.refresh(0)
            except libvirt.libvirtError:
                continue
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            return False
    _delete_when_built(vol)
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
