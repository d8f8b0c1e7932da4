"""Publishing state changes to the channel layer, from the watcher, web actions and tasks.

Every message goes to one group; each `/ws/events/` consumer filters what its user may see.
channels-redis delivers at most once, which is fine: a reconnecting page resynchronises.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

log = logging.getLogger(__name__)
GROUP = "webvirt.events"


def domain_message(row: Domain) -> dict[str, Any]:
    return {"type": "domain", "id": row.pk, "host": row.host_id, "uuid": row.uuid, "name": row.name,
            "state": row.state, "state_label": row.get_state_display(), "reason": row.reason, "vcpus": row.vcpus,
            "memory_mib": row.memory_mib, "autostart": row.autostart, "persistent": row.persistent,
            "owner": row.owner_id, "expires_at": row.expires_at.isoformat() if row.expires_at else None}


def domain_removed_message(host_id: int, domain_id: int, uuid: str, name: str,
                           owner: int | None = None) -> dict[str, Any]:
    return {"type": "domain", "id": domain_id, "host": host_id, "uuid": uuid, "name": name, "state": "removed",
            "state_label": "removed", "reason": "", "owner": owner}


def snapshots_message(row: Domain, change: str, name: str) -> dict[str, Any]:
    """A domain's snapshots changed through webvirt (libvirt sends no snapshot events)."""
    return {"type": "snapshots", "id": row.pk, "host": row.host_id, "uuid": row.uuid, "owner": row.owner_id,
            "change": change, "name": name}


def host_message(host: Host) -> dict[str, Any]:
    return {"type": "host", "host": host.pk, "name": host.name, "status": host.status,
            "reason": host.status_reason,
            "changed": host.status_changed.isoformat() if host.status_changed else None}


def job_message(job: Any) -> dict[str, Any]:
    return {"type": "job", "id": job.pk, "user": job.user_id, "kind": job.kind, "title": job.title,
            "state": job.state, "progress": round(job.progress, 1), "message": job.message, "error": job.error,
            "target": f"{job.target_type}:{job.target_id}" if job.target_type else ""}


def _envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "webvirt.event", "event": message}


async def apublish(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(GROUP, _envelope(message))
    except Exception:  # Redis down: the cache is still right and pages resync when they reconnect.
        log.warning("could not publish %s event", message.get("type"), exc_info=True)


async def apublish_to(group: str, message: dict[str, Any]) -> None:
    """To the pages that asked for this object's live figures (they were allowed when they asked)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, {"type": "webvirt.subscribed", "event": message})
    except Exception:  # Redis down: the history is stored all the same
        log.warning("could not publish to %s", group, exc_info=True)


def publish(message: dict[str, Any]) -> None:
    async_to_sync(apublish)(message)
