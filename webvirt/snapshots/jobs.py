"""The snapshot jobs: take, revert, delete, reset to template. Each ends by refreshing the state cache,
the domain's disk use (for quotas) and telling the browsers (libvirt sends no snapshot events)."""

from __future__ import annotations

import libvirt
from django.urls import reverse

from webvirt.domains.models import Domain
from webvirt.domains.services import store_state, template_bases
from webvirt.events.publish import publish, snapshots_message
from webvirt.hosts.connections import connect
from webvirt.jobs.runner import JobContext, JobError
from webvirt.snapshots.models import SnapshotSize
from webvirt.snapshots.services import GIB
from webvirt.virt import domains as virt_domains
from webvirt.virt import snapshots as virt


def _domain(ctx: JobContext) -> Domain:
    domain = Domain.objects.select_related("host", "template").filter(pk=ctx.params["domain"]).first()
    if domain is None:
        raise JobError("The domain no longer exists.")
    return domain


def _finish(domain: Domain, conn: libvirt.virConnect, change: str, name: str, message: str) -> dict:
    store_state(domain.host, virt_domains.read_state(virt_domains.lookup(conn, domain.uuid)))
    used = virt.footprint(conn, domain.uuid, template_bases(domain))
    Domain.objects.filter(pk=domain.pk).update(disk_gib=round(used / GIB, 2))
    publish(snapshots_message(domain, change, name))
    url = reverse("domains:detail", args=[domain.pk]) + "#snapshots"
    return {"message": message, "links": [{"label": f"{domain.name}'s snapshots", "url": url}]}


def run_snapshot_create(ctx: JobContext) -> dict:
    domain, p = _domain(ctx), ctx.params
    conn = connect(domain.host)
    ctx.progress(10, f"Taking {p['kind']} snapshot {p['name']}…", force=True)
    # Planned again against the domain as it is now (it may have stopped since the request).
    chosen = virt.plan(conn, domain.uuid, p["kind"], p["memory"])
    before = virt.disk_allocation(conn, domain.uuid)
    info = virt.create(conn, domain.uuid, p["name"], p["description"], chosen)
    grown = virt.disk_allocation(conn, domain.uuid) - before if info.kind == virt.INTERNAL else 0
    # A real internal snapshot always takes some room in its qcow2 file (at least a copy of the L1
    # table). No growth means it could not be measured: the file reused space freed earlier, or the
    # driver reports a fixed allocation (libvirt's test driver). Its size is then unknown, not 0 B.
    if grown > 0:
        # One INSERT … ON CONFLICT statement, not update_or_create: on SQLite its read-then-write
        # transaction fails at once ("database is locked") when anyone writes in between, such as the
        # watcher storing the pause and resume of a snapshot with memory, or this job's heartbeat.
        SnapshotSize.objects.bulk_create([SnapshotSize(domain=domain, name=info.name, size_bytes=grown)],
                                         update_conflicts=True, unique_fields=["domain", "name"],
                                         update_fields=["size_bytes"])
    ctx.progress(90, "Taken.", force=True)
    return _finish(domain, conn, "created", info.name,
                   f"Took {info.kind} snapshot {info.name} of {domain.name}: {p['reason']}.")


def run_snapshot_revert(ctx: JobContext) -> dict:
    domain, name = _domain(ctx), ctx.params["name"]
    conn = connect(domain.host)
    ctx.progress(10, f"Reverting {domain.name} to {name}…", force=True)
    freed = virt.revert(conn, domain.uuid, name, template_bases(domain))
    ctx.log(f"reverted to {name}; freed {', '.join(freed) or 'no files'}")
    state = virt_domains.state_name(virt_domains.lookup(conn, domain.uuid).state()[0])
    return _finish(domain, conn, "reverted", name,
                   f"{domain.name} is back at snapshot {name} and is {virt_domains.STATE_LABELS[state]}.")


def run_snapshot_delete(ctx: JobContext) -> dict:
    domain, name, children = _domain(ctx), ctx.params["name"], ctx.params["children"]
    conn = connect(domain.host)
    before = {i.name for i in virt.list_tree(conn, domain.uuid)}
    ctx.progress(10, f"Deleting snapshot {name}…", force=True)
    freed = virt.delete(conn, domain.uuid, name, children, template_bases(domain))
    gone = before - {i.name for i in virt.list_tree(conn, domain.uuid)}
    SnapshotSize.objects.filter(domain=domain, name__in=gone).delete()
    ctx.log(f"deleted {', '.join(sorted(gone))}; freed {', '.join(freed) or 'no files'}")
    return _finish(domain, conn, "deleted", name, f"Deleted {len(gone)} snapshot(s) of {domain.name}.")


def run_snapshot_reset(ctx: JobContext) -> dict:
    domain = _domain(ctx)
    if domain.template is None:
        raise JobError(f"{domain.name} has no template any more.")
    conn = connect(domain.host)
    ctx.progress(10, f"Resetting {domain.name} to {domain.template.name}…", force=True)
    bases = {d["target"]: d["path"] for d in domain.template.disks}
    freed = virt.reset_to_template(conn, domain.uuid, bases, template_bases(domain))
    SnapshotSize.objects.filter(domain=domain).delete()
    ctx.log(f"new overlays on {', '.join(bases.values())}; freed {', '.join(freed) or 'no other files'}")
    return _finish(domain, conn, "reset", "", f"{domain.name} is as {domain.template.name} made it, and shut off.")
