"""Moving domains between hosts and emptying a host for maintenance, shared by pages, API and jobs.

Administrators only. The pre-flight check runs here, in the request, and again in the job; the job
(webvirt.migration.jobs) does the moving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import transaction

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call, connect
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.virt import errors
from webvirt.virt import migration as virt
from webvirt.virt.errors import VirtError

CHECK_TIMEOUT = 5.0


@dataclass
class MoveRequest:
    host: Host
    live: bool = True
    storage: str = virt.SHARED
    max_downtime_ms: int = 300
    bandwidth_mib_s: int | None = None

    def params(self, domain: Domain) -> dict:
        values = asdict(self)
        values["host"] = self.host.pk
        return {"domain": domain.pk, **values}


@dataclass
class CheckResult:
    ok: bool
    problems: list[str]
    snapshots: int = 0


def check(actor: Actor, domain: Domain, req: MoveRequest) -> CheckResult:
    """Every problem that keeps the domain from moving, in plain words; answers within a few seconds even
    when the destination is down."""
    policy.require_admin(actor.user)
    plan, problems = plan_move(domain, req)
    return CheckResult(ok=not problems, problems=problems, snapshots=plan.snapshots if plan else 0)


def plan_move(domain: Domain, req: MoveRequest) -> tuple[virt.Plan | None, list[str]]:
    dest = req.host
    if dest.pk == domain.host_id:
        return None, [f"{domain.name} is already on {dest.name}."]
    problems = [f"{dest.name} is in maintenance: nothing new is placed on it."] if dest.maintenance else []
    try:
        # Fails fast, and marks the host offline, when it is down; one known to be down gets a second only.
        call(dest, virt.host_uuid, 1.0 if dest.status == Host.OFFLINE else CHECK_TIMEOUT)
        dst = connect(dest)
        plan = call(domain.host, lambda src: virt.check(src, dst, domain.uuid, req.storage, req.live), CHECK_TIMEOUT)
    except VirtError as exc:
        if exc.kind == errors.INVALID:
            raise
        where = dest.name if dest.status == Host.OFFLINE else domain.host.name  # call() marked who failed
        return None, [*problems, f"{where}: {exc.message}"]
    return plan, problems + plan.problems


def migrate(actor: Actor, domain: Domain, req: MoveRequest) -> Job:
    with audited(actor, "domain.migrate", domain) as target:
        policy.require_admin(actor.user)
        target.detail.append(f"to {req.host.name}, {'live' if req.live else 'offline'}, storage {req.storage}")
        _, problems = plan_move(domain, req)
        if problems:
            raise VirtError(" ".join(problems), errors.STATE)
        _refuse_busy(domain)
        return create_job(actor, "migrate", f"Migrate {domain.name} to {req.host.name}", params=req.params(domain),
                          host=domain.host, target=("domain", str(domain.pk), domain.name))


def _refuse_busy(domain: Domain) -> None:
    if Job.objects.filter(kind="migrate", target_type="domain", target_id=str(domain.pk),
                          state__in=Job.ACTIVE).exists() or domain.migrating_to_id:
        raise VirtError(f"{domain.name} is being migrated already.", errors.CONFLICT)


def evacuate(actor: Actor, host: Host) -> Job:
    """Put the host in maintenance and move every running domain to the other hosts, as one job."""
    with audited(actor, "host.evacuate", host):
        policy.require_admin(actor.user)
        with transaction.atomic():
            Host.objects.filter(pk=host.pk).update(maintenance=True)
            host.maintenance = True
            return create_job(actor, "evacuate", f"Evacuate {host.name}", params={"host": host.pk}, host=host,
                              target=("host", str(host.pk), host.name))


def set_maintenance(actor: Actor, host: Host, enabled: bool) -> Host:
    with audited(actor, "host.maintenance_on" if enabled else "host.maintenance_off", host):
        policy.require_admin(actor.user)
        Host.objects.filter(pk=host.pk).update(maintenance=enabled)
        host.maintenance = enabled
        return host
