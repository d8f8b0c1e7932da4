"""The clone job: make many clones at once, concurrently, and start them; undo what fails."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime

import libvirt
from django.db import close_old_connections
from django.urls import reverse
from lxml import etree

from webvirt.catalog.models import Template
from webvirt.domains.models import Domain
from webvirt.domains.services import store_snapshot
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.jobs.runner import Cancelled, JobContext, JobError, job_kind, undo
from webvirt.virt import clone as virt_clone
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors
from webvirt.virt.clone import BaseDisk

CREATE_CONCURRENCY = 4
# Under emulation every running guest competes for the CPU with the next start: starting them
# paused costs ~0.5 s each, then resuming them all at once is quick.
START_CONCURRENCY = 4


class Cloner:
    """Everything one clone job needs, shared by its worker threads."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        p = ctx.params
        self.template = Template.objects.select_related("host").get(pk=p["template"])
        self.host: Host = self.template.host
        self.target = self.host.target()
        self.linked = p["mode"] == "linked"
        self.disks = [BaseDisk(**d) for d in self.template.disks]
        self.names: list[str] = p["names"]
        self.expires_at = datetime.fromisoformat(p["expires_at"]) if p.get("expires_at") else None
        self.owner_id = p["owner"]
        self.done = 0
        self.lock = threading.Lock()
        self.copy_paths: dict[str, int] = {}  # full copies in flight: path -> capacity

    def conn(self) -> libvirt.virConnect:
        return manager.get(self.target)

    def pool_for(self, disk: BaseDisk) -> libvirt.virStoragePool:
        pool = self.conn().storagePoolLookupByName(self.template.clone_pool or disk.pool)
        kind = etree.fromstring(pool.XMLDesc(0).encode()).get("type")
        if self.linked and kind not in virt_clone.FILE_POOL_TYPES:
            raise JobError(f"Linked clones need a file-based pool (dir, fs or netfs); pool {pool.name()} is "
                           f"'{kind}'. Make full clones, or set a file-based pool for clones on the template.")
        return pool

    def make_disks(self, name: str) -> dict[str, str]:
        paths = {}
        for disk in self.disks:
            pool = self.pool_for(disk)
            vol_name = virt_clone.volume_name(name, disk)
            pool_path = etree.fromstring(pool.XMLDesc(0).encode()).findtext("./target/path") or ""
            path = f"{pool_path.rstrip('/')}/{vol_name}"
            with self.ctx.creating("volume", self.host.pk, path):
                vol = self.make_disk(pool, vol_name, path, disk)
            paths[disk.target] = vol.path()
        return paths

    def make_disk(self, pool: libvirt.virStoragePool, vol_name: str, path: str,
                  disk: BaseDisk) -> libvirt.virStorageVol:
        if self.linked:
            return pool.createXML(virt_clone.overlay_xml(vol_name, disk), 0)
        with self.lock:
            self.copy_paths[path] = disk.capacity
        try:
            base = self.conn().storageVolLookupByPath(disk.path)
            return pool.createXMLFrom(virt_clone.copy_xml(vol_name, disk), base, 0)
        finally:
            with self.lock:
                self.copy_paths.pop(path, None)

    def make_one(self, name: str) -> str:
        """Create one clone's disks and definition; returns its UUID."""
        self.ctx.check_cancel()
        uuid = virt_clone.new_uuid()
        paths = self.make_disks(name)
        self.ctx.check_cancel()
        xml = virt_clone.clone_domain_xml(self.template.xml, name, uuid, paths,
                                          description=f"Clone of {self.template.name}")
        with self.ctx.creating("domain", self.host.pk, uuid):
            dom = self.conn().defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        store_snapshot(self.host, virt_domains.snapshot(dom))
        # A linked clone's overlay can grow to the template's full size: it counts as that much.
        gib = sum(d.capacity for d in self.disks) / 1024**3
        Domain.objects.filter(host=self.host, uuid=uuid).update(
            owner_id=self.owner_id, template=self.template, linked=self.linked, job_id=self.ctx.job.pk,
            disk_gib=round(gib, 2), expires_at=self.expires_at)
        close_old_connections()
        return uuid

    def start_one(self, uuid: str) -> None:
        self.ctx.check_cancel()
        dom = self.conn().lookupByUUIDString(uuid)
        try:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            dom.create()  # A driver without paused starts (the test driver) starts it running.

    def resume(self, uuid: str) -> str:
        dom = self.conn().lookupByUUIDString(uuid)
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        state = virt_domains.state_name(dom.state()[0])
        store_snapshot(self.host, virt_domains.snapshot(dom))
        return state

    def copy_progress(self) -> float:
        """Bytes written so far by full copies in flight, as a fraction of their size."""
        with self.lock:
            flight = dict(self.copy_paths)
        if not flight:
            return 0.0
        written = 0
        for path, _cap in flight.items():
            try:
                written += self.conn().storageVolLookupByPath(path).info()[2]
            except libvirt.libvirtError:
                continue
        return written / max(1, sum(flight.values()))


def _run_pool(fn, items: list[str], workers: int, on_done) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Run fn over items with bounded concurrency; results or exceptions per item."""
    results: dict[str, object] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(fn, item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            try:
                results[item] = future.result()
            except Exception as exc:  # collected per clone; Cancelled is re-raised by the caller
                results[item] = exc
            on_done(item, results[item])
    return results


@job_kind("clone")
def run_clone(ctx: JobContext) -> dict:
    cloner = Cloner(ctx)
    total = len(cloner.names)
    share = 50.0 if ctx.params.get("start") else 95.0
    ctx.progress(1, f"Creating {total} {'linked' if cloner.linked else 'full'} clone(s)…", force=True)
    made: dict[str, str] = {}
    failed: dict[str, str] = {}
    stop = threading.Event()
    if not cloner.linked:
        threading.Thread(target=_report_copies, args=(ctx, cloner, share, stop), daemon=True).start()

    def created(name: str, result: object) -> None:
        if isinstance(result, str):
            made[name] = result
            ctx.log(f"created {name}")
        elif not isinstance(result, Cancelled):
            failed[name] = _message(result)
            ctx.log(f"could not create {name}: {failed[name]}")
        cloner.done = len(made) + len(failed)
        ctx.progress(share * cloner.done / total, f"Created {len(made)} of {total}.")

    results = _run_pool(cloner.make_one, cloner.names, CREATE_CONCURRENCY, created)
    stop.set()
    if any(isinstance(r, Cancelled) for r in results.values()):
        raise Cancelled()
    started = _start_all(ctx, cloner, made, failed) if ctx.params.get("start") else {}
    # Keep the clones that worked; remove whatever the failed ones left behind, now.
    ctx.keep({uuid for name, uuid in made.items() if name not in failed} | _disk_keys(ctx.job, made, failed))
    undo(ctx.job)
    return _summary(cloner, made, failed, started)


def _start_all(ctx: JobContext, cloner: Cloner, made: dict[str, str], failed: dict[str, str]) -> dict[str, str]:
    total = len(made)
    started: list[str] = []

    def on_start(uuid: str, result: object) -> None:
        name = next(n for n, u in made.items() if u == uuid)
        if result is None:
            started.append(uuid)
        elif not isinstance(result, Cancelled):
            failed[name] = f"created, but could not start: {_message(result)}"
        ctx.progress(50 + 40 * (len(started) + 1) / max(1, total), f"Started {len(started)} of {total}.")

    results = _run_pool(cloner.start_one, list(made.values()), START_CONCURRENCY, on_start)
    if any(isinstance(r, Cancelled) for r in results.values()):
        raise Cancelled()
    states = {}
    for uuid in started:
        try:
            states[uuid] = cloner.resume(uuid)
        except libvirt.libvirtError as exc:
            states[uuid] = f"error: {exc.get_error_message()}"
    ctx.progress(99, f"{sum(1 for s in states.values() if s == 'running')} of {total} running.", force=True)
    return states


def _report_copies(ctx: JobContext, cloner: Cloner, share: float, stop: threading.Event) -> None:
    total = len(cloner.names)
    while not stop.wait(1.0):
        fraction = cloner.copy_progress()
        if fraction:
            in_flight = len(cloner.copy_paths) or 1
            ctx.progress(share * min(1.0, (cloner.done + fraction * in_flight) / total),
                         f"Copying disks: {cloner.done} of {total} done, the rest {fraction:.0%}.")
    close_old_connections()


def _disk_keys(job: Job, made: dict[str, str], failed: dict[str, str]) -> set[str]:
    """The volume paths of the clones that succeeded (tracked objects to keep)."""
    job.refresh_from_db()
    good = [n for n in made if n not in failed]
    return {o["key"] for o in job.created_objects
            if o["kind"] == "volume" and any(f"/{n}-" in o["key"] for n in good)}


def _message(exc: object) -> str:
    if isinstance(exc, libvirt.libvirtError):
        return errors.from_libvirt(exc).message
    return str(exc)


def _summary(cloner: Cloner, made: dict[str, str], failed: dict[str, str], started: dict[str, str]) -> dict:
    ok = [n for n in made if n not in failed]
    rows = {d.uuid: d for d in Domain.objects.filter(host=cloner.host, uuid__in=[made[n] for n in ok])}
    links = [{"label": n, "url": reverse("domains:detail", args=[rows[made[n]].pk])} for n in ok if made[n] in rows]
    message = f"{len(ok)} of {len(cloner.names)} clone(s) made"
    if started:
        message += f", {sum(1 for s in started.values() if s == 'running')} running"
    if failed:
        message += f"; {len(failed)} failed"
    return {"succeeded": len(ok), "failed": len(failed), "errors": failed, "links": links, "message": message + ".",
            "error": "; ".join(f"{n}: {e}" for n, e in failed.items())}
