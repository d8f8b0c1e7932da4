"""The bulk action job: one action on many domains, a few at a time, a line per domain.

Each domain goes through the service its single action uses (lifecycle, remove or undefine, a
snapshot, a new expiry), with the requesting user as the actor: the policy is asked per domain, and
each is audited as the single action is. A domain the user may not see is reported by its id only,
as not found, so a selection of guessed ids learns no names.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import libvirt

from webvirt.accounts.policy import Actor, Denied
from webvirt.dbthreads import closing_connections
from webvirt.domains import services
from webvirt.domains.bulk import ACTIONS
from webvirt.domains.models import Domain
from webvirt.jobs.runner import Cancelled, JobContext, JobError
from webvirt.virt import errors
from webvirt.virt.domains import ACTIONS as LIFECYCLE
from webvirt.virt.errors import VirtError

# Starts are CPU-bound on a small host (each boots a guest); four at a time keeps a storm in check
# while a shutdown of hundreds still ends in seconds.
CONCURRENCY = 4
SNAPSHOT_TIMEOUT = 600.0
NOT_FOUND = "skipped: not found, or not yours"


@dataclass
class Line:
    id: int
    name: str  # "#<id>" for a domain the user may not see
    ok: bool
    outcome: str


def run_bulk(ctx: JobContext) -> dict:
    p = ctx.params
    if ctx.job.user is None:
        # Nobody to check the policy against: a system actor would be allowed everything.
        raise JobError("The user who asked for this bulk action no longer exists; nothing was done.")
    actor = Actor(user=ctx.job.user, address=p.get("address"), via=p.get("via") or "task")
    ids: list[int] = p["ids"]
    rows = {d.pk: d for d in Domain.objects.select_related("host", "template", "job").filter(pk__in=ids)}
    lines: dict[int, Line] = {}

    @closing_connections
    def one(pk: int) -> Line:
        try:
            ctx.check_cancel()
            return _one(ctx, actor, rows.get(pk), pk)
        except Cancelled:
            return Line(pk, rows[pk].name if pk in rows else f"#{pk}", False, "cancelled: not done")

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        for future in as_completed([pool.submit(one, pk) for pk in ids]):
            line = future.result()
            lines[line.id] = line
            ctx.log(f"{line.name}: {line.outcome}")
            ctx.progress(100 * len(lines) / len(ids), f"{len(lines)} of {len(ids)} done.")
    ctx.check_cancel()
    return _summary(p["action"], [lines[pk] for pk in ids])


def _one(ctx: JobContext, actor: Actor, domain: Domain | None, pk: int) -> Line:
    if domain is None:
        return Line(pk, f"#{pk}", False, NOT_FOUND)
    try:
        return Line(pk, domain.name, True, _act(ctx, actor, domain))
    except Denied as exc:
        if exc.hidden:
            return Line(pk, f"#{pk}", False, NOT_FOUND)
        return Line(pk, domain.name, False, f"skipped: {exc.message}")
    except (VirtError, JobError) as exc:
        return Line(pk, domain.name, False, f"failed: {exc}")
    except libvirt.libvirtError as exc:
        return Line(pk, domain.name, False, f"failed: {errors.from_libvirt(exc).message}")


def _act(ctx: JobContext, actor: Actor, domain: Domain) -> str:
    """Do the action to one domain through its single-domain service; what happened, in a few words."""
    action, args = ctx.params["action"], ctx.params["args"]
    if action in LIFECYCLE:
        row = services.run_action(actor, domain, action)
        return f"{ACTIONS[action].done}; it is {row.get_state_display()}"
    if action == "remove":
        if domain.template_id is not None:  # a clone: its disks are its own, they go with it
            deleted = services.remove(actor, domain)
            return f"removed with {len(deleted)} disk volume(s)"
        services.undefine(actor, domain, delete_volumes=False)
        return "undefined; its disks are kept (it is not a clone)"
    if action == "extend":
        from webvirt.catalog.services import extend_expiry

        until = datetime.fromisoformat(args["expires_at"]) if args["expires_at"] else None
        extend_expiry(actor, domain, until)
        return f"expires {until:%Y-%m-%d %H:%M}" if until else "never expires"
    if action == "snapshot":
        return _snapshot(ctx, actor, domain, args)
    raise JobError(f"'{action}' is not a bulk action.")


def _snapshot(ctx: JobContext, actor: Actor, domain: Domain, args: dict[str, Any]) -> str:
    """Take a snapshot through the snapshots app's own job, run here (or by whichever worker claims it
    first), and wait for its end, so the line says how it went."""
    from webvirt.jobs.models import Job
    from webvirt.jobs.runner import execute
    from webvirt.snapshots.services import TakeRequest, take

    job, plan = take(actor, domain, TakeRequest(name=args["name"], description=args["description"]))
    execute(job.pk, ctx.job.worker.split(":")[0])  # a no-op if another worker claimed it first
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    job.refresh_from_db()
    while job.is_active and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    if job.state != Job.SUCCEEDED:
        raise JobError(job.error or f"snapshot job #{job.pk} is {job.get_state_display()}")
    return f"{plan.kind} snapshot {job.params['name']} taken"


def _summary(action: str, lines: list[Line]) -> dict:
    done = sum(line.ok for line in lines)
    skipped = sum(line.outcome.startswith("skipped") for line in lines)
    failed = len(lines) - done - skipped
    bad = [f"{line.name}: {line.outcome}" for line in lines if not line.ok]
    error = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
    return {"message": f"{ACTIONS[action].label}: {done} of {len(lines)} done, {skipped} skipped, {failed} failed.",
            "succeeded": done, "failed": len(lines) - done, "skipped": skipped, "error": error,
            "domains": [{"id": line.id, "name": line.name, "ok": line.ok, "outcome": line.outcome} for line in lines]}
