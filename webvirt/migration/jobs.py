"""The migration job and the evacuation job.

A migration watches libvirt's job every half second: it reports progress (smoothed between libvirt's
coarse disk steps), applies the stall policy, and aborts at once when the job is cancelled. What it
made on the destination (copied disks' volumes) is tracked, so a failure or a cancel leaves nothing
there; the domain keeps running on the source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import libvirt

from webvirt.dbthreads import closing_connections
from webvirt.domains.models import Domain
from webvirt.domains.services import store_state, template_bases
from webvirt.events.publish import domain_message, publish
from webvirt.hosts.connections import connect
from webvirt.hosts.models import Host
from webvirt.jobs.runner import Cancelled, JobContext, JobError
from webvirt.migration.services import MoveRequest, plan_move
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors, hostinfo
from webvirt.virt import migration as virt
from webvirt.virt.errors import VirtError

POLL_SECONDS = 0.5
CANCEL_POLL_SECONDS = 0.1
EVACUATE_CONCURRENCY = 2
STORAGE_PREFERENCE = (virt.SHARED, virt.COPY_INC, virt.COPY_ALL)  # for evacuation: the least copying first

Report = Callable[[float, str], None]


def run_migrate(ctx: JobContext) -> dict:
    p = ctx.params
    domain = Domain.objects.select_related("host").filter(pk=p["domain"]).first()
    dest = Host.objects.filter(pk=p["host"]).first()
    if domain is None or dest is None:
        raise JobError("The domain or the destination host no longer exists.")
    req = MoveRequest(host=dest, live=p["live"], storage=p["storage"], max_downtime_ms=p["max_downtime_ms"],
                      bandwidth_mib_s=p["bandwidth_mib_s"])
    message = move(ctx, domain, req, lambda pct, text: ctx.progress(pct, text))
    return {"message": message, "links": [{"label": domain.name, "url": domain.get_absolute_url()}]}


def move(ctx: JobContext, domain: Domain, req: MoveRequest, report: Report) -> str:
    """Migrate one domain; returns what happened, as a sentence. Raises on failure, Cancelled on cancel."""
    plan, problems = plan_move(domain, req)
    if problems or plan is None:
        raise JobError(" ".join(problems))
    src, dst = connect(domain.host), connect(req.host)
    dom = virt_domains.lookup(src, domain.uuid)
    Domain.objects.filter(pk=domain.pk).update(migrating_to=req.host)
    saved: list[tuple[str, bool]] = []
    try:
        for disk in plan.disks if plan.storage != virt.SHARED else []:
            with ctx.creating("volume", req.host.pk, disk.dest):
                virt.make_volume(dst, disk, plan.storage)
        if plan.snapshots:
            saved = virt.take_snapshot_metadata(dom)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        flags, params = virt.flags_and_params(plan, req.host.migration_uri, req.bandwidth_mib_s, xml)
        started = time.monotonic()
        arrived = _watch(ctx, dom, lambda: dom.migrate3(dst, params, flags), req, report)
    except BaseException:
        if saved:
            virt.put_snapshot_metadata(dom, saved)
        Domain.objects.filter(pk=domain.pk).update(migrating_to=None, host=domain.host)
        _refresh(domain.host, dom)
        raise
    if saved:
        virt.put_snapshot_metadata(arrived, saved)
    ctx.keep({d.dest for d in plan.disks})  # the domain's disks now: never undone
    Domain.objects.filter(pk=domain.pk).update(host=req.host, migrating_to=None)
    _refresh(req.host, arrived)
    took = time.monotonic() - started
    downtime = virt.downtime_ms(arrived) if plan.live else None
    return (f"{domain.name} moved to {req.host.name} in {took:.1f} s"
            + (f" with {downtime} ms of downtime" if downtime is not None else "")
            + (f", with its {len(saved)} snapshot(s)" if saved else "") + "." + _clean_source(ctx, src, plan, domain))


def _clean_source(ctx: JobContext, src: libvirt.virConnect, plan: virt.Plan, domain: Domain) -> str:
    """Delete the copied disks' files on the source; the move has succeeded whatever happens here."""
    try:
        deleted = virt.delete_sources(src, plan, template_bases(domain))
    except (libvirt.libvirtError, VirtError) as exc:
        ctx.log(f"could not delete the disks left on {domain.host.name}: {exc}")
        return f" Its old disks on {domain.host.name} could not be deleted ({exc}); delete them there."
    if deleted:
        ctx.log(f"deleted on {domain.host.name}: {', '.join(deleted)}")
        return f" Its old disks on {domain.host.name} were deleted."
    return ""


def _refresh(host: Host, dom: libvirt.virDomain) -> None:
    try:
        row = store_state(host, virt_domains.read_state(dom))
    except libvirt.libvirtError:
        return  # gone from there (the source after a migration); the watcher follows
    publish(domain_message(row))


def _watch(ctx: JobContext, dom: libvirt.virDomain, start: Callable[[], libvirt.virDomain], req: MoveRequest,
           report: Report) -> libvirt.virDomain:
    """Run the migration in a thread and watch it: progress, the stall policy, cancellation."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["dom"] = start()
        except BaseException as exc:  # handed to the watching thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=closing_connections(run), daemon=True)
    thread.start()
    estimate, stall = virt.Estimate(), virt.StallPolicy(req.max_downtime_ms)
    downtime_set = False
    looked, shown = 0.0, 5.0
    memory = int(dom.info()[2]) * 1024 if req.live else 0
    while thread.is_alive():
        thread.join(CANCEL_POLL_SECONDS)  # a cancel is noticed within this; libvirt's figures are read less often
        if not thread.is_alive():
            break
        if _cancelled(ctx):
            _abort(dom, thread)
            raise Cancelled()
        if time.monotonic() - looked < POLL_SECONDS:
            continue
        looked = time.monotonic()
        now = virt.progress(dom, memory)
        if now is None or not now.total:
            report(shown, "Preparing the destination…")
            continue
        if not downtime_set and req.live:
            downtime_set = _set_downtime(dom, req.max_downtime_ms)
        done = int(now.fraction * now.total)
        shown = max(shown, 5 + 90 * estimate.fraction(time.monotonic(), done, now.total))  # never backwards
        report(shown, f"{done / 2**20:,.0f} of {now.total / 2**20:,.0f} MiB moved; "
                      f"downtime allowed {stall.downtime_ms} ms.")
        _apply_stall(ctx, dom, thread, stall, now)
    if "error" in outcome:
        error = outcome["error"]
        raise errors.from_libvirt(error) if isinstance(error, libvirt.libvirtError) else error
    result: libvirt.virDomain = outcome["dom"]
    return result


def _cancelled(ctx: JobContext) -> bool:
    try:
        ctx.check_cancel()
    except Cancelled:
        return True
    return False


def _abort(dom: libvirt.virDomain, thread: threading.Thread) -> None:
    """Stop the migration; the domain goes on running on the source."""
    try:
        dom.abortJob()
    except libvirt.libvirtError:
        pass  # already over
    thread.join(30)


def _set_downtime(dom: libvirt.virDomain, ms: int) -> bool:
    try:
        dom.migrateSetMaxDowntime(ms, 0)
    except libvirt.libvirtError:
        return False
    return True


def _apply_stall(ctx: JobContext, dom: libvirt.virDomain, thread: threading.Thread, stall: virt.StallPolicy,
                 now: virt.Progress) -> None:
    if now.disk_remaining or now.iteration < 2 or not now.remaining:
        # Disks are copied first, and the first memory pass always moves everything: the policy is about
        # the later passes, chasing memory the guest changes, that stop getting shorter.
        return
    action = stall.observe(time.monotonic(), now.remaining)
    if action == "raise":
        ctx.log(f"the data left stopped shrinking: allowing {stall.downtime_ms} ms of downtime")
        _set_downtime(dom, stall.downtime_ms)
    elif action == "abort":
        _abort(dom, thread)
        raise VirtError(f"The guest changes its memory faster than it can be moved ({now.remaining / 2**20:,.0f} MiB "
                        f"left after {now.elapsed_ms / 1000:.0f} s, even with {stall.downtime_ms} ms of downtime "
                        "allowed). It keeps running where it was. Try again when it is quieter, with more "
                        "bandwidth, or offline.", errors.STATE)


# Evacuation -------------------------------------------------------------------------------------

def run_evacuate(ctx: JobContext) -> dict:
    host = Host.objects.get(pk=ctx.params["host"])
    running = list(Domain.objects.filter(host=host, state__in=("running", "paused", "blocked")).order_by("name"))
    if not running:
        return {"message": f"Nothing runs on {host.name}: it is empty and in maintenance.", "succeeded": 0}
    lines: dict[str, str] = {}
    moved = 0

    @closing_connections
    def one(domain: Domain) -> str:
        return _evacuate_one(ctx, domain)

    with ThreadPoolExecutor(max_workers=EVACUATE_CONCURRENCY) as pool:
        futures = {pool.submit(one, d): d for d in running}
        for future in as_completed(futures):
            domain = futures[future]
            try:
                lines[domain.name] = future.result()
                moved += 1
            except Cancelled:
                lines[domain.name] = "cancelled: it stays on this host"
            except (VirtError, JobError, libvirt.libvirtError) as exc:
                lines[domain.name] = f"not moved: {exc}"
            ctx.log(f"{domain.name}: {lines[domain.name]}")
            ctx.progress(100 * len(lines) / len(running), f"{len(lines)} of {len(running)} done, {moved} moved.")
    ctx.check_cancel()
    return {"message": f"{moved} of {len(running)} domain(s) moved off {host.name}; it stays in maintenance.",
            "succeeded": moved, "failed": len(running) - moved, "domains": lines,
            "error": "; ".join(f"{n}: {t}" for n, t in lines.items() if not t.startswith("moved"))}


def _evacuate_one(ctx: JobContext, domain: Domain) -> str:
    """Move one domain to the first host (most free memory first) and storage mode that pass the check."""
    others = Host.objects.filter(status=Host.ONLINE, maintenance=False).exclude(pk=domain.host_id)
    found: list[str] = []
    for dest in sorted(others, key=_free_memory, reverse=True):
        for storage in STORAGE_PREFERENCE:
            req = MoveRequest(host=dest, live=True, storage=storage)
            _, problems = plan_move(domain, req)
            if not problems:
                message = move(ctx, domain, req, lambda pct, text: None)
                return f"moved: {message}"
            found.append(f"{dest.name} ({storage}): {problems[0]}")
    raise JobError("no host can take it. " + " ".join(found[:3]) if found else "there is no other host online.")


def _free_memory(host: Host) -> int:
    try:
        return hostinfo.free_memory(connect(host))
    except (VirtError, libvirt.libvirtError):
        return 0
