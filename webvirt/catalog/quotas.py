"""Quotas per user and per group, checked and reserved atomically.

A check bumps the `version` of every quota row that applies before it reads usage. That write
takes a row lock on PostgreSQL and the database's write lock on SQLite, so two concurrent
requests are serialised and cannot together exceed a quota. What a running clone job will
create is held in its `reserved` field until it finishes; the domains it has already created
are counted through that reservation, not twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.contrib.auth.models import User
from django.db.models import F, Q, Sum

from webvirt.catalog.models import Quota
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

LABELS = {"instances": "instances", "vcpus": "vCPUs", "memory_mib": "MiB of memory", "disk_gib": "GiB of disk"}


@dataclass
class Usage:
    instances: float = 0
    vcpus: float = 0
    memory_mib: float = 0
    disk_gib: float = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in LABELS})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _usage(user_filter: Q, job_filter: Q) -> Usage:
    active_jobs = Job.objects.filter(job_filter, state__in=Job.ACTIVE)
    owned = Domain.objects.filter(user_filter).exclude(job__in=active_jobs).aggregate(
        vcpus=Sum("vcpus"), memory_mib=Sum("memory_mib"), disk_gib=Sum("disk_gib"))
    usage = Usage(instances=Domain.objects.filter(user_filter).exclude(job__in=active_jobs).count(),
                  vcpus=owned["vcpus"] or 0, memory_mib=owned["memory_mib"] or 0, disk_gib=owned["disk_gib"] or 0)
    for reserved in active_jobs.values_list("reserved", flat=True):
        usage = usage + Usage(**{k: reserved.get(k, 0) for k in LABELS})
    return usage


def applicable(user: User) -> list[Quota]:
    """The quota rows that limit `user`: their own and their groups', in a fixed (lock) order."""
    return list(Quota.objects.filter(Q(user=user) | Q(group__in=user.groups.all())).order_by("pk"))


def usage_for(quota: Quota) -> Usage:
    if quota.user_id:
        return _usage(Q(owner_id=quota.user_id), Q(user_id=quota.user_id))
    return _usage(Q(owner__groups=quota.group_id), Q(user__groups=quota.group_id))


def remaining(user: User) -> dict[str, float | None]:
    """What `user` may still use under the tightest quota; None means no limit."""
    left: dict[str, float | None] = {k: None for k in LABELS}
    for quota in applicable(user):
        used = usage_for(quota)
        for key in LABELS:
            limit = getattr(quota, key)
            if limit is not None:
                value = max(0.0, limit - getattr(used, key))
                left[key] = value if left[key] is None else min(left[key], value)
    return left


def check_and_lock(user: User, need: Usage) -> None:
    """Inside a transaction: lock the user's quotas, then refuse if `need` does not fit."""
    # Write before reading anything: a SQLite transaction that has read cannot wait for the write
    # lock (it fails at once with "database is locked"); one that writes first waits its turn.
    # On PostgreSQL the update locks the quota rows until the transaction ends.
    Quota.objects.filter(Q(user=user) | Q(group__in=user.groups.all())).update(version=F("version") + 1)
    quotas = applicable(user)
    for quota in quotas:
        used = usage_for(quota)
        for key, label in LABELS.items():
            limit = getattr(quota, key)
            if limit is not None and getattr(used, key) + getattr(need, key) > limit:
                whose = "your" if quota.user_id or quota.group is None else f"group {quota.group.name}'s"
                left = max(0, limit - getattr(used, key))
                raise VirtError(f"That needs {getattr(need, key):g} {label}, but {whose} quota has {left:g} left "
                                f"(of {limit}). Ask for fewer, or remove machines you no longer need.",
                                errors.CONFLICT)
