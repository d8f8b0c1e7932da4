"""Live libvirt objects on a host (networks, pools, volumes, interfaces), named by composite ids.

webvirt does not cache these: each host has few of them, and they are read live with a timeout.
Their API and page ids are `<host id>:<libvirt key>`: `3:<uuid>` for a network or a pool,
`3:<pool uuid>:<volume name>` for a volume, `3:<interface name>` for a host interface. An id
stays valid for as long as the object exists (UUIDs do not change; a volume cannot be renamed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from webvirt.accounts import policy
from webvirt.accounts.audit import Target, audited
from webvirt.accounts.policy import Actor, Denied
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host

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


def read(actor: Actor, oid: str, fn: Callable[..., T], *, parts: int = 2,
         timeout: float | None = None) -> tuple[Host, T]:
    """A read of the live object `oid` (not audited), refused unless `actor` may manage its host:
    the host, and `fn(conn, *keys)` there."""
    host, keys = split_id(actor.user, oid, parts)
    return host, call(host, lambda conn: fn(conn, *keys), timeout)


@dataclass
class LiveAction:
    """An audited action on the live object `oid` (see `acting`): its host, its id's keys and the audit target."""

    host: Host
    keys: list[str]
    target: Target
    kind: str
    oid: str

    def call(self, fn: Callable[..., T], timeout: float | None = None) -> T:
        """`fn(conn, *keys)` on the object's host."""
        return call(self.host, lambda conn: fn(conn, *self.keys), timeout)

    def name(self, name: str) -> None:
        """Say which object this is in the audit trail ("<name> on <host>"), once its name is known."""
        self.target.set(kind=self.kind, ident=self.oid, text=f"{name} on {self.host.name}")


@contextmanager
def acting(actor: Actor, action: str, kind: str, oid: str, parts: int = 2, *,
           named: bool = False) -> Iterator[LiveAction]:
    """Audit `action` on the `kind` object `oid`, refused unless `actor` may manage its host.

    The audit entry shows the id until the object is named: at once with `named` (a volume's or a
    host interface's name is the last key of its id), else by the block. Whatever the block raises
    is recorded as the action's failure.
    """
    with audited(actor, action) as target:
        target.set(kind=kind, ident=oid, text=oid)
        host, keys = split_id(actor.user, oid, parts)
        live = LiveAction(host, keys, target, kind, oid)
        if named:
            live.name(keys[-1])
        yield live


def act(actor: Actor, action: str, kind: str, oid: str, fn: Callable[..., T], *, parts: int = 2,
        timeout: float | None = None, named: bool = False, name_of: Callable[[T], str] | None = None,
        detail: Iterable[str] = ()) -> T:
    """The usual audited action (see `acting`): `fn(conn, *keys)` on the host of `oid`, and its result.

    `name_of` names the object from the result (a network's or a pool's name); `detail` is added
    to the audit entry once the call succeeded.
    """
    with acting(actor, action, kind, oid, parts, named=named) as live:
        result = live.call(fn, timeout)
        if name_of is not None:
            live.name(name_of(result))
        live.target.detail.extend(detail)
        return result
