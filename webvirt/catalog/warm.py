"""Warm pools: clones of a template made and booted ahead of time, handed out at once on request.

A template keeps `warm_count` machines running and owned by nobody (the policy hides unowned
domains from everyone but administrators). A request for one machine takes a warm one with a
conditional update (`status=warm` -> `handed_out`: exactly one request wins it), gives it an owner,
an expiry and the title the user asked for, and answers with it; a `warm_refill` job then makes
a new one. Warm and booting machines hold the administrators' pool budget,
`WEBVIRT_WARM_BUDGET_MIB` (their memory, all templates together), never anyone's quota; a
handed-out machine counts against its owner's quota like any clone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.text import slugify

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.catalog import quotas, seeds
from webvirt.catalog.models import Template, WarmMachine
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.virt import clone as virt_clone
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

KIND = "warm_refill"
MAX_WARM = 20  # per template: a pool is for the next few requests, not a fleet
HOLDING = (WarmMachine.BOOTING, WarmMachine.WARM)  # what holds the pool budget


def budget_mib() -> int:
    """The administrators' warm pool budget: memory all warm and booting machines may hold together."""
    return int(settings.WEBVIRT_WARM_BUDGET_MIB)


def budget_used_mib(exclude: Template | None = None) -> int:
    rows = WarmMachine.objects.filter(status__in=HOLDING)
    if exclude is not None:
        rows = rows.exclude(template=exclude)
    return int(rows.aggregate(total=Sum("memory_mib"))["total"] or 0)


def holding(template: Template) -> int:
    """Machines of the template that are warm or on their way."""
    return WarmMachine.objects.filter(template=template, status__in=HOLDING).count()


# Setting the size ----------------------------------------------------------------------------------

def check_size(template: Template, count: int) -> None:
    """Refuse a pool size that the budget cannot hold, with the numbers."""
    if not 0 <= count <= MAX_WARM:
        raise VirtError(f"Keep between 0 and {MAX_WARM} warm machines.", errors.INVALID)
    need = count * template.memory_mib
    left = budget_mib() - budget_used_mib(exclude=template)
    if need > left:
        raise VirtError(f"{count} warm machines need {count} x {template.memory_mib} MiB = {need} MiB, but the warm "
                        f"pool budget has {max(0, left)} MiB left (of {budget_mib()} MiB, "
                        "WEBVIRT_WARM_BUDGET_MIB). Keep fewer, or raise the budget.", errors.CONFLICT)


def set_size(actor: Actor, template: Template, count: int, boot_marker: str | None = None) -> Template:
    """Set how many warm machines the template keeps (administrators), and start filling the pool."""
    with audited(actor, "template.warm", template) as target:
        policy.require_admin(actor.user)
        policy.require(actor.user, policy.CHANGE, template)
        check_size(template, count)
        seeds.check(seeds.CloudInitData.of(template), count)
        template.warm_count = count
        fields = ["warm_count"]
        if boot_marker is not None:
            template.boot_marker, fields = boot_marker.strip(), [*fields, "boot_marker"]
        template.save(update_fields=fields)
        target.detail.append(f"{count} warm machine(s)")
    transaction.on_commit(lambda: start_refill(template))
    return template


# Handing one out -----------------------------------------------------------------------------------

def hand_out(actor: Actor, template: Template, title: str, expires_at: datetime | None) -> Domain | None:
    """Give the user a warm machine of the template, or None when none is free (the caller clones).

    The quota is checked (and held, under the quota rows' lock) before the machine is claimed. The
    claim is a conditional update, so two requests never get the same machine.
    """
    user: User = actor.user
    need = quotas.Usage(instances=1, vcpus=template.vcpus, memory_mib=template.memory_mib,
                        disk_gib=template.disk_gib)
    with transaction.atomic():
        quotas.check_and_lock(user, need)
        machine = _claim(template, user, title)
        if machine is None:
            return None
        Domain.objects.filter(pk=machine.domain_id).update(owner=user, expires_at=expires_at, job=None)
    domain = Domain.objects.select_related("host").get(pk=machine.domain_id)
    if template.cloud_init and not _give_keys(template, machine, domain):
        return None
    try:
        call(domain.host, lambda conn: virt_domains.set_title(conn, domain.uuid, title))
    except VirtError:
        pass  # The title lives in webvirt too (the warm row); the machine is the user's either way.
    transaction.on_commit(lambda: start_refill(template))
    return domain


def _give_keys(template: Template, machine: WarmMachine, domain: Domain) -> bool:
    """The owner's SSH keys into a handed-out machine through its guest agent (its seed was made before it
    had an owner). A machine whose agent does not take them is nobody's again and is removed: the request
    is then cloned instead, with the keys in the new clone's seed."""
    from webvirt.domains.services import remove

    try:
        call(domain.host, lambda conn: seeds.give_keys(conn, template, domain.uuid, machine.handed_to_id))
        return True
    except VirtError as exc:
        Domain.objects.filter(pk=domain.pk).update(owner=None, expires_at=None)
        WarmMachine.objects.filter(pk=machine.pk).delete()
        try:
            remove(Actor(user=None, via="task"), domain,
                   reason=f"its guest agent did not take its owner's SSH keys: {exc.message}")
        except VirtError:
            pass  # the host does not answer: the machine stays, unowned, for an administrator
        return False


def _claim(template: Template, user: User, title: str) -> WarmMachine | None:
    """Take the oldest warm, running machine of the template; exactly one caller wins each."""
    candidates = WarmMachine.objects.filter(template=template, status=WarmMachine.WARM,
                                            domain__state="running").order_by("ready_at", "pk")
    for machine in candidates[:10]:
        won = WarmMachine.objects.filter(pk=machine.pk, status=WarmMachine.WARM).update(
            status=WarmMachine.HANDED_OUT, handed_to=user, handed_at=timezone.now(), title=title)
        if won == 1:
            machine.refresh_from_db()
            return machine
    return None


def taken_titles(template: Template) -> set[str]:
    """Titles of handed-out machines on the template's host: a new request's name must not repeat one."""
    return set(WarmMachine.objects.filter(domain__host=template.host, status=WarmMachine.HANDED_OUT)
               .values_list("title", flat=True))


# Refilling -----------------------------------------------------------------------------------------

SYSTEM = Actor(user=AnonymousUser(), via="task")


def start_refill(template: Template, after: Job | None = None) -> Job | None:
    """Start a job making the template's missing warm machines, unless one is already at it or the
    budget is spent. Two callers at once (a hand-out and the beat) start at most one job. `after`: the
    refill job that is ending, which starts the next for what was handed out while it ran."""
    trim(template)
    with transaction.atomic():
        # Write first: the row lock (PostgreSQL) or write lock (SQLite) serialises concurrent starters.
        Template.objects.filter(pk=template.pk).update(warm_count=F("warm_count"))
        template.refresh_from_db()
        active = Job.objects.filter(kind=KIND, target_type="template", target_id=str(template.pk),
                                    state__in=Job.ACTIVE)
        if after is not None:
            active = active.exclude(pk=after.pk)
        if active.exists():
            return None
        missing = template.warm_count - holding(template)
        room = (budget_mib() - budget_used_mib()) // max(1, template.memory_mib)
        count = min(missing, room)
        if count <= 0 or template.host.status == template.host.OFFLINE or template.sealing:
            return None
        with audited(SYSTEM, "template.warm_refill", template) as target:
            names = _names(template, count)
            job = create_job(SYSTEM, KIND, f"Warm pool of {template.name}: {count} machine(s)",
                             params={"template": template.pk, "names": names, "mode": "linked", "start": True,
                                     "owner": None, "expires_at": None},
                             host=template.host, target=("template", str(template.pk), template.name))
            target.detail.append(f"job #{job.pk}: {', '.join(names)}"
                                 + (f" ({missing - count} more wait for budget)" if missing > count else ""))
        return job


def trim(template: Template) -> list[str]:
    """Remove warm machines above the pool's size (it was made smaller): the newest go first."""
    from webvirt.domains.services import remove

    surplus = holding(template) - template.warm_count
    removed: list[str] = []
    if surplus <= 0:
        return removed
    for machine in WarmMachine.objects.filter(template=template, status=WarmMachine.WARM).select_related(
            "domain__host").order_by("-ready_at")[:surplus]:
        # Claimed like a hand-out first, so that a request cannot take the machine being removed.
        if WarmMachine.objects.filter(pk=machine.pk, status=WarmMachine.WARM).delete()[0]:
            try:
                remove(Actor(user=None, via="task"), machine.domain, reason="the warm pool was made smaller")
                removed.append(machine.domain.name)
            except VirtError:
                continue  # the host does not answer: the machine stays, unowned, for an administrator
    return removed


def _names(template: Template, count: int) -> list[str]:
    """Machine names `<template>-warm-NN`, after the names already taken on the host."""
    pattern = f"{slugify(template.name)[:40] or 'template'}-warm-{{n:02}}"
    existing = set(Domain.objects.filter(host=template.host).values_list("name", flat=True))
    return virt_clone.clone_names(pattern, count, virt_clone.first_free(pattern, count, existing))


def refill_due() -> list[int]:
    """Every pool below its size gets a refill job (the beat, every minute): the jobs' ids."""
    started = []
    for template in Template.objects.select_related("host").filter(warm_count__gt=0):
        if holding(template) < template.warm_count:
            job = start_refill(template)
            if job is not None:
                started.append(job.pk)
    return started


# The template page ---------------------------------------------------------------------------------

@dataclass
class PoolStatus:
    size: int
    warm: int = 0
    booting: int = 0
    handed_out: int = 0
    budget_mib: int = 0
    budget_used_mib: int = 0
    machines: list[WarmMachine] = field(default_factory=list)
    refill: Job | None = None


def status(template: Template) -> PoolStatus:
    machines = list(WarmMachine.objects.filter(template=template).select_related("domain", "handed_to")
                    .order_by("-created")[:50])
    counts = {s: WarmMachine.objects.filter(template=template, status=s).count() for s, _ in WarmMachine.STATUSES}
    refill = Job.objects.filter(kind=KIND, target_type="template", target_id=str(template.pk)).first()
    return PoolStatus(size=template.warm_count, warm=counts[WarmMachine.WARM], booting=counts[WarmMachine.BOOTING],
                      handed_out=counts[WarmMachine.HANDED_OUT], budget_mib=budget_mib(),
                      budget_used_mib=budget_used_mib(), machines=machines, refill=refill)
