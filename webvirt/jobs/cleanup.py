"""Removing what a job created on a host: used when a job fails, is cancelled or loses its worker."""

from __future__ import annotations

import libvirt

from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.virt import domains


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
    vol.delete(0)
    return True
