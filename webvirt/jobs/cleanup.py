"""Removing what a job created on a host: used when a job fails, is cancelled or loses its worker."""

from __future__ import annotations

from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.virt import made

REMOVE_TIMEOUT = 60.0  # a full copy in flight is waited for (made.BUILD_WAIT_SECONDS) before it goes


def remove_object(obj: dict) -> bool:
    """Remove one tracked object; False when it was not there (already gone, or never made)."""
    host = Host.objects.filter(pk=obj["host"]).first()
    if host is None:
        return False
    removed = call(host, lambda conn: made.remove(conn, obj["kind"], obj["key"]), timeout=REMOVE_TIMEOUT)
    if obj["kind"] == made.DOMAIN:
        from webvirt.domains.models import Domain

        Domain.objects.filter(host=host, uuid=obj["key"]).delete()
    return removed


def object_exists(obj: dict) -> bool:
    """Is there already something under a tracked object's key (a domain UUID, a volume path)?"""
    host = Host.objects.get(pk=obj["host"])
    return call(host, lambda conn: made.exists(conn, obj["kind"], obj["key"]))
