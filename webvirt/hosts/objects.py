"""Live libvirt objects on a host (networks, pools, volumes, interfaces), named by composite ids.

webvirt does not cache these: each host has few of them, and they are read live with a timeout.
Their API and page ids are `<host id>:<libvirt key>`: `3:<uuid>` for a network or a pool,
`3:<pool uuid>:<volume name>` for a volume, `3:<interface name>` for a host interface. An id
stays valid for as long as the object exists (UUIDs do not change; a volume cannot be renamed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from webvirt.accounts import policy
from webvirt.accounts.policy import Denied
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.hosts.services import OFFLINE_KINDS, mark_status
from webvirt.virt.errors import VirtError

T = TypeVar("T")


def make_id(host: Host | int, *keys: str) -> str:
    return ":".join([str(host.pk if isinstance(host, Host) else host), *keys])


def split_id(user: object, oid: str, parts: int) -> tuple[Host, list[str]]:
    """The host of `oid` (which `user` may manage) and the id's remaining `parts - 1` keys.

    Anything malformed, on an unknown host or on a host the user may not see is "not found".
    """
    head, _, rest = str(oid).partition(":")
    keys = rest.split(":", parts - 2) if parts > 1 else []
    if not head.isdigit() or len(keys) != parts - 1 or not all(keys):
        raise Denied("Not found.", hidden=True)
    host = Host.objects.filter(pk=int(head)).first()
    if host is None:
        raise Denied("Not found.", hidden=True)
    policy.require(user, policy.CHANGE, host)
    return host, keys


def host_call(host: Host, fn: Callable, timeout: float | None = None) -> T:  # type: ignore[type-arg]
    """A libvirt call on `host` (with the manager's timeout) that also keeps the host's status true."""
    try:
        result = call(host, fn, timeout)
    except VirtError as exc:
        if exc.kind in OFFLINE_KINDS:
            mark_status(host, False, exc.message)
        raise
    if host.status != Host.ONLINE:
        mark_status(host, True)
    return result
