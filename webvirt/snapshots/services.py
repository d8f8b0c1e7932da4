"""A domain's snapshots and resetting a linked clone to its template, shared by pages, API and jobs.

Every change is checked here (policy, template, quota, one operation at a time) and carried out by a
job (webvirt.snapshots.jobs), so the page and the API answer at once and show progress.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import libvirt
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.catalog.models import Template
from webvirt.catalog.quotas import Usage, check_and_lock
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.snapshots.models import SnapshotSize
from webvirt.virt import errors
from webvirt.virt import snapshots as virt
from webvirt.virt.domains import lookup
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshots import Plan, SnapshotInfo

JOB_KINDS = ("snapshot_create", "snapshot_revert", "snapshot_delete", "snapshot_reset")
GIB = 1024**3
MAX_DESCRIPTION = 1000
RECENT_FAILURES = timedelta(minutes=15)


def list_snapshots(actor: Actor, domain: Domain) -> list[SnapshotInfo]:
    """The domain's snapshots in tree order, read from libvirt now (so changes made with virsh show too)."""
    policy.require(actor.user, policy.VIEW, domain)
    infos = call(domain.host, lambda conn: virt.list_tree(conn, domain.uuid))
    sizes = dict(SnapshotSize.objects.filter(domain=domain).values_list("name", "size_bytes"))
    for info in infos:
        if info.size_bytes is None:
            info.size_bytes = sizes.get(info.name) or None  # 0 was stored for "not measured" once
    return infos


def recent_jobs(actor: Actor, domain: Domain) -> list[Job]:
    """The domain's snapshot jobs the tab shows: those still queued or running, and those that failed in the
    last quarter of an hour after its last success (so a failure stays in sight), that `actor` may see."""
    jobs = policy.visible(actor.user, Job.objects.filter(kind__in=JOB_KINDS, target_type="domain",
                                                         target_id=str(domain.pk)))
    last_success = jobs.filter(state=Job.SUCCEEDED).order_by("-finished").values_list("finished", flat=True).first()
    since = max(filter(None, [last_success, timezone.now() - RECENT_FAILURES]))
    return list(jobs.filter(Q(state__in=Job.ACTIVE) | Q(state=Job.FAILED, finished__gt=since)).order_by("created"))


def memory_by_default(domain: Domain) -> bool:
    """Whether the take form ticks "include memory": for a running domain that can have it."""
    if domain.state != "running":
        return False
    try:
        call(domain.host, lambda conn: virt.plan(conn, domain.uuid, "auto", True))
    except VirtError:
        return False
    return True


def default_name() -> str:
    return timezone.localtime().strftime("%Y-%m-%d_%H.%M.%S")


@dataclass
class TakeRequest:
    name: str = ""
    description: str = ""
    memory: bool = False
    kind: str = "auto"


def take(actor: Actor, domain: Domain, req: TakeRequest) -> tuple[Job, Plan]:
    """Start a job taking a snapshot; the plan says which kind it will be and why."""
    with audited(actor, "snapshot.create", domain) as target:
        _check(actor, domain)
        name = virt.check_name(req.name.strip() or default_name())
        if len(req.description) > MAX_DESCRIPTION:
            raise VirtError(f"Keep the description under {MAX_DESCRIPTION} characters.", errors.INVALID)

        def prepare(conn: libvirt.virConnect) -> Plan:
            virt.refuse_taken_name(conn, domain.uuid, name)
            chosen = virt.plan(conn, domain.uuid, req.kind, req.memory)
            virt.check_room(conn, chosen)
            return chosen

        chosen = call(domain.host, prepare)
        target.detail.append(f"{name}: {chosen.kind}, because {chosen.reason}")
        params = {"name": name, "description": req.description, "memory": chosen.memory, "kind": chosen.kind,
                  "reason": chosen.reason}
        job = _start(actor, domain, "snapshot_create", f"Snapshot {name} of {domain.name}", params,
                     reserve_gib=math.ceil(chosen.extra_bytes / GIB * 100) / 100)
        return job, chosen


def revert(actor: Actor, domain: Domain, name: str) -> Job:
    with audited(actor, "snapshot.revert", domain) as target:
        _check(actor, domain)
        target.detail.append(name)
        _require_snapshot(domain, name)
        return _start(actor, domain, "snapshot_revert", f"Revert {domain.name} to {name}", {"name": name})


def delete(actor: Actor, domain: Domain, name: str, children: bool = False) -> Job:
    with audited(actor, "snapshot.delete", domain) as target:
        _check(actor, domain)
        target.detail.append(f"{name}{' and its children' if children else ''}")
        _require_snapshot(domain, name)
        title = f"Delete snapshot {name}{' and its children' if children else ''} of {domain.name}"
        return _start(actor, domain, "snapshot_delete", title, {"name": name, "children": children})


def reset_to_template(actor: Actor, domain: Domain) -> Job:
    """Discard everything written since a linked clone was made (its snapshots too)."""
    with audited(actor, "snapshot.reset", domain):
        _check(actor, domain)
        if not domain.linked or domain.template_id is None:
            raise VirtError(f"{domain.name} is not a linked clone of a template, so there is nothing to reset it to.",
                            errors.STATE)
        return _start(actor, domain, "snapshot_reset", f"Reset {domain.name} to its template", {})


def _check(actor: Actor, domain: Domain) -> None:
    policy.require(actor.user, policy.SNAPSHOT, domain)
    if domain.is_template or Template.objects.filter(host_id=domain.host_id, source_uuid=domain.uuid).exists():
        raise VirtError(f"{domain.name} is a template's domain: its disks are the read-only bases of clones, so it "
                        "has no snapshots. Snapshot a clone instead.", errors.STATE)
    _refuse_busy(domain)


def _refuse_busy(domain: Domain) -> None:
    if Job.objects.filter(kind__in=JOB_KINDS, target_type="domain", target_id=str(domain.pk),
                          state__in=Job.ACTIVE).exists():
        raise VirtError(f"Another snapshot operation on {domain.name} has not finished yet; wait for it to end.",
                        errors.CONFLICT)


def _require_snapshot(domain: Domain, name: str) -> None:
    call(domain.host, lambda conn: virt.lookup_snapshot(lookup(conn, domain.uuid), name))


def _start(actor: Actor, domain: Domain, kind: str, title: str, params: dict, reserve_gib: float = 0.0) -> Job:
    """The job, after reserving what it may add on disk under the actor's quota (administrators have none)."""
    with transaction.atomic():
        # A write first: it holds the domain's row (or SQLite's write lock) until the job exists, so two
        # requests at the same moment cannot both find no job running and both start one.
        Domain.objects.filter(pk=domain.pk).update(disk_gib=F("disk_gib"))
        _refuse_busy(domain)
        if reserve_gib and not policy.is_admin(actor.user):
            check_and_lock(actor.user, Usage(disk_gib=reserve_gib))
        return create_job(actor, kind, title, params={"domain": domain.pk, **params}, host=domain.host,
                          target=("domain", str(domain.pk), domain.name),
                          reserved={"disk_gib": reserve_gib} if reserve_gib else None)
