"""Writing the audit trail. Every change made through webvirt goes through `audited`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Model

from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.virt.errors import VirtError


@dataclass
class Target:
    """What an audited action is about; a creating action fills it in once the object exists."""

    object_type: str = ""
    object_id: str = ""
    object_repr: str = ""
    detail: list[str] = field(default_factory=list)

    def set(self, obj: Model | None = None, *, kind: str = "", ident: Any = "", text: str = "") -> None:
        if obj is not None:
            kind, ident, text = obj._meta.model_name or "", obj.pk, str(obj)
        self.object_type, self.object_id, self.object_repr = kind, str(ident or ""), text[:200]


def record(actor: Actor, action: str, target: Target, outcome: str, detail: str = "") -> AuditEntry:
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return AuditEntry.objects.create(
        user=user, username=user.get_username() if user else "", action=action,
        object_type=target.object_type, object_id=target.object_id, object_repr=target.object_repr,
        address=actor.address, via=actor.via, outcome=outcome, detail=detail[:4000],
    )


@contextmanager
def audited(actor: Actor, action: str, obj: Model | None = None) -> Iterator[Target]:
    """Record `action` with its outcome: succeeded, refused (policy) or failed (with the reason)."""
    target = Target()
    if obj is not None:
        target.set(obj)
    try:
        yield target
    except Denied as exc:
        record(actor, action, target, AuditEntry.REFUSED, exc.message)
        raise
    except VirtError as exc:
        record(actor, action, target, AuditEntry.FAILED, exc.message)
        raise
    except Exception as exc:
        record(actor, action, target, AuditEntry.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    record(actor, action, target, AuditEntry.OK, "; ".join(target.detail))
