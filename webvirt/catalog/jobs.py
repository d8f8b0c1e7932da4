"""The clone job: make many clones at once, concurrently, and start them; undo what fails.

Also the one boot check (`start_booted`), used by the warm refill and by clone jobs asked to check
(a wave's): start paused, resume with the serial console open, and wait for the template's ready line,
or, for a template without one, for the guest to keep running SETTLE_SECONDS; forced off and started
once more when it does not boot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import datetime

import libvirt
from django.db import close_old_connections
from django.urls import reverse
from django.utils import timezone

from webvirt.catalog import seeds
from webvirt.catalog.models import Template, WarmMachine
from webvirt.dbthreads import closing_connections
from webvirt.domains.models import Domain
from webvirt.domains.services import store_state
from webvirt.hosts.connections import connect
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.jobs.runner import Cancelled, JobContext, JobError, undo
from webvirt.virt import clone as virt_clone
from webvirt.virt import console as virt_console
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors, hostinfo
from webvirt.virt import seal as virt_seal
from webvirt.virt import seed as virt_seed
from webvirt.virt.clone import BaseDisk
from webvirt.virt.errors import VirtError

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
        self.linked = p["mode"] == "linked"
        self.disks = [BaseDisk(**d) for d in self.template.disks]
        self.names: list[str] = p["names"]
        self.expires_at = datetime.fromisoformat(p["expires_at"]) if p.get("expires_at") else None
        self.owner_id = p["owner"]
        self.owners: dict[str, int] = p.get("owners") or {}  # name -> owner, when they differ (a wave)
        self.boot_check = bool(p.get("boot_check"))  # start each clone with start_booted (a wave's)
        self.password_hash: str = p.get("password_hash") or ""
        self.done = 0
        self.lock = threading.Lock()
        self.copy_paths: dict[str, int] = {}  # full copies in flight: path -> capacity

    def conn(self) -> libvirt.virConnect:
        return connect(self.host)

    def make_disks(self, name: str) -> dict[str, str]:
        paths = {}
        for disk in self.disks:
            pool, folder = virt_clone.clone_pool(self.conn(), self.template.clone_pool or disk.pool, self.linked)
            vol_name = virt_clone.volume_name(name, disk)
            path = f"{folder.rstrip('/')}/{vol_name}"
            with self.ctx.creating("volume", self.host.pk, path), self.copying(path, disk):
                paths[disk.target] = virt_clone.make_disk(self.conn(), pool, vol_name, disk, self.linked)
        return paths

    def make_seed(self, name: str, uuid: str) -> str:
        """Upload one clone's cloud-init seed beside its disks (removed with them); its path."""
        pool, folder = virt_clone.clone_pool(self.conn(), self.template.pool, self.linked)
        vol_name = virt_seed.seed_volume_name(name)
        data = seeds.seed_of(self.template, name, uuid, self.owners.get(name, self.owner_id), self.password_hash)
        with self.ctx.creating("volume", self.host.pk, f"{folder.rstrip('/')}/{vol_name}"):
            return virt_seed.upload_seed(self.conn(), pool.name(), vol_name, data)

    @contextmanager
    def copying(self, path: str, disk: BaseDisk) -> Iterator[None]:
        """Note a full copy in flight, for the progress reporter."""
        if self.linked:
            yield
            return
        with self.lock:
            self.copy_paths[path] = disk.capacity
        try:
            yield
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
        if self.template.cloud_init:
            xml = virt_seed.attach(xml, self.make_seed(name, uuid))
        with self.ctx.creating("domain", self.host.pk, uuid):
            snap = virt_domains.define(self.conn(), xml)
        store_state(self.host, snap)
        # A linked clone's overlay can grow to the template's full size: it counts as that much.
        gib = sum(d.capacity for d in self.disks) / 1024**3
        Domain.objects.filter(host=self.host, uuid=uuid).update(
            owner_id=self.owners.get(name, self.owner_id), template=self.template, linked=self.linked,
            job_id=self.ctx.job.pk, disk_gib=round(gib, 2), expires_at=self.expires_at)
        close_old_connections()
        return uuid

    def start_one(self, uuid: str) -> None:
        self.ctx.check_cancel()
        virt_domains.start_paused(self.conn(), uuid)

    def resume(self, uuid: str) -> str:
        snap = virt_domains.resume_if_paused(self.conn(), uuid)
        store_state(self.host, snap)
        self.started(uuid)
        return snap.state

    def started(self, uuid: str) -> None:
        """A clone is running for the first time: its seed leaves the definition if the template says so
        (the running guest keeps reading it until it powers off; a clone made without starting keeps it)."""
        if self.template.cloud_init and self.template.detach_seed:
            virt_seed.detach(self.conn(), uuid)

    def copy_progress(self) -> float:
        """Bytes written so far by full copies in flight, as a fraction of their size."""
        with self.lock:
            flight = dict(self.copy_paths)
        if not flight:
            return 0.0
        return virt_clone.copied_bytes(self.conn(), list(flight)) / max(1, sum(flight.values()))


def _run_pool(fn: Callable[[str], object], items: list[str], workers: int,
              on_done: Callable[[str, object], None]) -> dict[str, object]:
    """Run fn over items with bounded concurrency; results or exceptions per item."""
    results: dict[str, object] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(closing_connections(fn), item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            try:
                results[item] = future.result()
            except Exception as exc:  # collected per clone; Cancelled is re-raised by the caller
                results[item] = exc
            on_done(item, results[item])
    return results


def run_clone(ctx: JobContext) -> dict:
    cloner = Cloner(ctx)
    total = len(cloner.names)
    share = 50.0 if ctx.params.get("start") else 95.0
    ctx.progress(1, f"Creating {total} {'linked' if cloner.linked else 'full'} clone(s)…", force=True)
    made: dict[str, str] = {}
    failed: dict[str, str] = {}
    stop = threading.Event()
    if not cloner.linked:
        threading.Thread(target=closing_connections(_report_copies), args=(ctx, cloner, share, stop),
                         daemon=True).start()

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
    started: dict[str, str] = {}
    if ctx.params.get("start"):
        started = (_boot_all if cloner.boot_check else _start_all)(ctx, cloner, made, failed)
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
        except (libvirt.libvirtError, VirtError) as exc:
            states[uuid] = f"error: {_message(exc)}"
    ctx.progress(99, f"{sum(1 for s in states.values() if s == 'running')} of {total} running.", force=True)
    return states


def _boot_all(ctx: JobContext, cloner: Cloner, made: dict[str, str], failed: dict[str, str]) -> dict[str, str]:
    """Start the clones and check each booted (start_booted), with bounded concurrency. The outcome so far
    is in the job's result while it runs (boot_outcome), so that a wave counts its booted machines live."""
    names = {uuid: name for name, uuid in made.items()}
    booted: list[str] = []
    _note_boots(ctx, booted, failed)

    def on_boot(uuid: str, result: object) -> None:
        name = names[uuid]
        if result is None:
            booted.append(name)
            ctx.log(f"{name} booted")
        elif not isinstance(result, Cancelled):
            failed[name] = f"created, but did not boot: {_message(result)}"
            ctx.log(f"{name} failed: {failed[name]}")
        _note_boots(ctx, booted, failed)
        ctx.progress(50 + 49 * (len(booted) + len(failed)) / max(1, len(cloner.names)),
                     f"{len(booted)} of {len(made)} booted.")

    results = _run_pool(lambda uuid: start_booted(cloner, names[uuid], uuid), list(made.values()),
                        START_CONCURRENCY, on_boot)
    if any(isinstance(r, Cancelled) for r in results.values()):
        raise Cancelled()
    return {made[name]: "running" for name in booted}


def _note_boots(ctx: JobContext, booted: list[str], failed: dict[str, str]) -> None:
    Job.objects.filter(pk=ctx.job.pk).update(result={"booted": list(booted), "errors": dict(failed)})


def boot_outcome(job: Job) -> tuple[set[str], set[str]]:
    """The names a boot-checking clone job has seen boot, and those that failed (so far, while it runs)."""
    result = job.result or {}
    return set(result.get("booted") or []), set(result.get("errors") or {})


def _report_copies(ctx: JobContext, cloner: Cloner, share: float, stop: threading.Event) -> None:
    total = len(cloner.names)
    while not stop.wait(1.0):
        fraction = cloner.copy_progress()
        if fraction:
            in_flight = len(cloner.copy_paths) or 1
            ctx.progress(share * min(1.0, (cloner.done + fraction * in_flight) / total),
                         f"Copying disks: {cloner.done} of {total} done, the rest {fraction:.0%}.")


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
    if cloner.boot_check:
        message += f", {len(started)} booted"
    if failed:
        message += f"; {len(failed)} failed"
    summary = {"succeeded": len(ok), "failed": len(failed), "errors": failed, "links": links,
               "message": message + ".", "error": "; ".join(f"{n}: {e}" for n, e in failed.items())}
    if cloner.boot_check:
        summary["booted"] = [n for n in ok if made[n] in started]
    return summary


# Warm pools -------------------------------------------------------------------------------------

# Warm machines are made two at a time: each boots while the next is made, and under emulation
# more concurrent boots only slow every one of them down.
WARM_CONCURRENCY = 2


def run_warm_refill(ctx: JobContext) -> dict:
    """Make, start and check booted the warm machines a template's pool is missing.

    Each machine is kept (no longer undone by a later failure) as soon as it has booted: from then on
    it may be handed out, while this job is still making the others.
    """
    cloner = Cloner(ctx)
    total = len(cloner.names)
    ready: list[str] = []
    failed: dict[str, str] = {}
    ctx.progress(1, f"Making {total} warm machine(s)…", force=True)

    def done(name: str, result: object) -> None:
        if isinstance(result, str):
            ready.append(name)
            ctx.log(f"{name} is warm")
        elif not isinstance(result, Cancelled):
            failed[name] = _message(result)
            ctx.log(f"{name} failed: {failed[name]}")
        ctx.progress(99 * (len(ready) + len(failed)) / total, f"{len(ready)} of {total} warm.")

    results = _run_pool(lambda name: _warm_one(cloner, name), cloner.names, WARM_CONCURRENCY, done)
    if any(isinstance(r, Cancelled) for r in results.values()):
        raise Cancelled()
    undo(ctx.job)  # what the failed ones left behind; the warm ones were kept as they booted
    if not failed:
        # Machines handed out while this job ran are made up at once; after a failure, the beat tries again.
        from webvirt.catalog import warm

        warm.start_refill(cloner.template, after=ctx.job)
    message = f"{len(ready)} of {total} warm machine(s) ready" + (f"; {len(failed)} failed." if failed else ".")
    return {"succeeded": len(ready), "failed": len(failed), "errors": failed, "message": message,
            "error": "; ".join(f"{n}: {e}" for n, e in failed.items())}


def _warm_one(cloner: Cloner, name: str) -> str:
    """One warm machine: defined, started (if the host has the memory), booted; returns its UUID."""
    template = cloner.template
    free_mib = hostinfo.free_memory_mib(cloner.conn())
    if free_mib < template.memory_mib:
        raise JobError(f"The host has {free_mib} MiB of memory free; a warm machine of {template.name} needs "
                       f"{template.memory_mib} MiB. It waits for the next refill.")
    uuid = cloner.make_one(name)
    row = Domain.objects.get(host=cloner.host, uuid=uuid)
    machine = WarmMachine.objects.create(template=template, domain=row, memory_mib=template.memory_mib)
    close_old_connections()
    start_booted(cloner, name, uuid)
    WarmMachine.objects.filter(pk=machine.pk).update(status=WarmMachine.WARM, ready_at=timezone.now())
    cloner.ctx.keep({uuid} | {o["key"] for o in _tracked(cloner.ctx) if f"/{name}-" in o["key"]})
    return uuid


def _tracked(ctx: JobContext) -> list[dict]:
    return list(ctx.job.created_objects)


# The boot check ------------------------------------------------------------------------------------

BOOT_TIMEOUT = 60.0  # per attempt; the tiny test guest boots in 3-10 s here
BOOT_ATTEMPTS = 2
SETTLE_SECONDS = 10.0  # a guest with no ready line is booted once it has run this long


def start_booted(cloner: Cloner, name: str, uuid: str) -> None:
    """Start a defined clone and confirm it booted; one that does not (the CPU-bound start storm can
    panic an emulated kernel) is forced off and started once more. JobError when it never boots."""
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        booted, shown = _boot(cloner, uuid)
        if booted:
            store_state(cloner.host, virt_domains.read_state(virt_domains.lookup(cloner.conn(), uuid)))
            cloner.started(uuid)
            return
        cloner.ctx.log(f"{name} did not boot (attempt {attempt}); its console showed: {shown[-300:]!r}")
        _force_off(cloner, uuid)
    marker = cloner.template.boot_marker
    if marker:
        raise JobError(f"{name} did not boot within {BOOT_TIMEOUT:g} s, {BOOT_ATTEMPTS} times (no '{marker}' "
                       "on its console).")
    raise JobError(f"{name} did not boot: it stopped within {SETTLE_SECONDS:g} s of its start, {BOOT_ATTEMPTS} times.")


def _boot(cloner: Cloner, uuid: str) -> tuple[bool, str]:
    """Start the machine and wait until it is up: its ready line on the serial console (read from
    the moment it starts: it is started paused and resumed with the console open), else still
    running after SETTLE_SECONDS. Returns whether it booted, and what its console showed."""
    cloner.ctx.check_cancel()
    virt_domains.start_paused(cloner.conn(), uuid)
    marker = cloner.template.boot_marker
    stream = virt_console.open_serial(cloner.conn(), uuid, force=True) if marker else None
    virt_domains.resume_if_paused(cloner.conn(), uuid)
    if stream is not None:
        return virt_console.read_until(stream, marker, BOOT_TIMEOUT)
    return virt_domains.stays_running(cloner.conn(), uuid, SETTLE_SECONDS), ""


def _force_off(cloner: Cloner, uuid: str) -> None:
    """A guest that hung while booting (the start storm can panic an emulated kernel) is forced off
    before it is started again."""
    dom = virt_domains.lookup(cloner.conn(), uuid)
    if dom.isActive():
        dom.destroy()


# Sealing ---------------------------------------------------------------------------------------------

def run_seal(ctx: JobContext) -> dict:
    """Seal a new template's disks with virt-sysprep, or say why not: the template is usable either way."""
    template = Template.objects.select_related("host").get(pk=ctx.params["template"])
    ctx.progress(5, "Sealing the disks with virt-sysprep (a minute or more)…", force=True)
    try:
        # By its disk files: a template's disks are read-only in its definition, which virt-sysprep skips.
        result = virt_seal.seal_disks(template.host.uri, [(d["path"], d["format"]) for d in template.disks])
    except BaseException:
        Template.objects.filter(pk=template.pk).update(seal_state="failed", seal_note="The sealing job stopped.")
        raise
    note = (f"Sealed in {result.seconds:.0f} s: {', '.join(result.operations)}." if result.sealed
            else f"Not sealed: {result.reason}")
    Template.objects.filter(pk=template.pk).update(seal_state="sealed" if result.sealed else "failed",
                                                   seal_note=note[:500])
    ctx.log(note)
    return {"sealed": result.sealed, "message": note}
