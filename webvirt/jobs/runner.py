"""Running a job: claim it once, report progress, honour cancellation, undo what it created.

The Celery task only calls `execute(job_id)`. Each kind of job is one function taking a
`JobContext`, named in `webvirt.jobs.kinds`; the UI and the API create the Job row through
`webvirt.jobs.services.create_job` and never run the work themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import libvirt
from django.db.models import F
from django.utils import timezone

from webvirt.dbthreads import closing_connections
from webvirt.jobs import kinds
from webvirt.jobs.models import Job
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5
STALE_SECONDS = 30  # A running job whose heartbeat is older than this has lost its worker.
MAX_LOG_LINES = 500


class Cancelled(Exception):
    """Raised at the next step of a job whose cancellation was asked for."""


class JobError(Exception):
    """A failure with a message for the user (the job's error)."""


class JobContext:
    """What a job function sees: its parameters, and ways to report and to stay undoable."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.params = job.params
        self._last_push = 0.0
        self._lock = threading.Lock()

    def progress(self, percent: float, message: str | None = None, force: bool = False) -> None:
        """Record progress; written and pushed at most ~5 times a second unless forced."""
        with self._lock:
            self.job.progress = max(0.0, min(100.0, percent))
            if message is not None:
                self.job.message = message[:300]
            now = time.monotonic()
            if not force and now - self._last_push < 0.2:
                return
            self._last_push = now
            Job.objects.filter(pk=self.job.pk).update(progress=self.job.progress, message=self.job.message)
        publish_job(self.job)

    def log(self, line: str) -> None:
        with self._lock:
            stamp = timezone.now().strftime("%H:%M:%S")
            self.job.log = [*self.job.log, f"{stamp} {line}"][-MAX_LOG_LINES:]
            Job.objects.filter(pk=self.job.pk).update(log=self.job.log)

    def check_cancel(self) -> None:
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise Cancelled()

    def track(self, kind: str, host_id: int, key: str) -> None:
        """Note an object before creating it, so it is removed if the job does not succeed."""
        with self._lock:
            self.job.created_objects = [*self.job.created_objects, {"kind": kind, "host": host_id, "key": key}]
            Job.objects.filter(pk=self.job.pk).update(created_objects=self.job.created_objects)

    @contextmanager
    def creating(self, kind: str, host_id: int, key: str) -> Iterator[None]:
        """Track an object around the one call that creates it, so that undo removes only what
        this job made.

        Something already under `key` is someone else's: the job fails without tracking it. When
        the creating call itself fails, nothing under `key` is ours either (libvirt removes a volume
        whose build failed; "already exists" means another made it first), so it is untracked.
        What stays tracked is what the call made, or was making when the worker died or was stopped
        (SystemExit and KeyboardInterrupt leave libvirtd still building it: the reaper removes it).
        """
        from webvirt.jobs.cleanup import object_exists

        obj = {"kind": kind, "host": host_id, "key": key}
        if object_exists(obj):
            raise JobError(f"A {kind} {key} already exists on the host; this job did not make it and leaves it "
                           "alone. Choose another name.")
        self.track(kind, host_id, key)
        try:
            yield
        except Exception:
            self.keep({key})  # the call failed: nothing under `key` is ours, undo must never remove it
            raise

    def keep(self, keys: set[str]) -> None:
        """Stop tracking these: finished results (a later failure must not remove them), or keys
        under which this job made nothing."""
        with self._lock:
            self.job.created_objects = [o for o in self.job.created_objects if o["key"] not in keys]
            Job.objects.filter(pk=self.job.pk).update(created_objects=self.job.created_objects)


def publish_job(job: Job) -> None:
    from webvirt.events.publish import job_message, publish

    publish(job_message(job))


def _claim(job_id: int, worker: str) -> Job | None:
    """Move a queued job to running; exactly one worker can win (Healthchecks' atomic claim).

    Anything but a queued job is left alone: a message Celery delivers again (the broker's
    visibility timeout gives a dead worker's unacknowledged message to another) finds its job
    already failed by the reaper, or finished, and runs nothing twice.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, state=Job.QUEUED, cancel_requested=False).update(
        state=Job.RUNNING, started=now, heartbeat=now, attempts=F("attempts") + 1,
        worker=f"{worker or socket.gethostname()}:{os.getpid()}"[:100])
    return Job.objects.get(pk=job_id) if claimed == 1 else None


def _heartbeat(job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        Job.objects.filter(pk=job_id, state=Job.RUNNING).update(heartbeat=timezone.now())


def execute(job_id: int, worker: str = "") -> str | None:
    """Run job `job_id` if it is still queued. Returns its final state.

    `worker` names the Celery worker (its node name, e.g. worker1@host), recorded with the process id
    on the job, so that with several workers on one machine the row says which one ran it.
    """
    job = _claim(job_id, worker)
    if job is None:
        Job.objects.filter(pk=job_id, state=Job.QUEUED, cancel_requested=True).update(
            state=Job.CANCELLED, finished=timezone.now(), message="Cancelled before it started.")
        return None
    ctx = JobContext(job)
    publish_job(job)
    stop = threading.Event()
    beat = threading.Thread(target=closing_connections(_heartbeat), args=(job.pk, stop), daemon=True)
    beat.start()
    try:
        state, error, result = _run(ctx)
    finally:
        stop.set()
    if state != Job.SUCCEEDED:
        undo(job)
    _finish(job, state, error, result)
    return state


def _run(ctx: JobContext) -> tuple[str, str, dict]:
    run = kinds.runner(ctx.job.kind)
    if run is None:
        return Job.FAILED, f"This worker does not know jobs of kind '{ctx.job.kind}'.", {}
    try:
        result = run(ctx) or {}
    except Cancelled:
        return Job.CANCELLED, "", {}
    except (JobError, VirtError) as exc:
        ctx.log(f"failed: {exc}")
        return Job.FAILED, str(exc), {}
    except libvirt.libvirtError as exc:  # libvirt refused: its reason, as a sentence, is the job's error
        message = errors.from_libvirt(exc).message
        ctx.log(f"failed: {message}")
        return Job.FAILED, message, {}
    except Exception as exc:
        log.exception("job %s crashed", ctx.job.pk)
        ctx.log(traceback.format_exc(limit=5))
        return Job.FAILED, f"An unexpected error stopped the job ({type(exc).__name__}: {exc}).", {}
    if result.get("failed") and not result.get("succeeded"):
        return Job.FAILED, result.get("error", "Nothing succeeded."), result
    return Job.SUCCEEDED, result.get("error", ""), result


def _finish(job: Job, state: str, error: str, result: dict) -> None:
    job.refresh_from_db()
    job.state, job.error, job.result, job.finished = state, error, result, timezone.now()
    if state == Job.SUCCEEDED:
        job.progress, job.message = 100, result.get("message", "Done.")
    elif state == Job.CANCELLED:
        job.message = "Cancelled; what it had created was removed."
    else:
        job.message = "Failed; what it had created was removed."
    job.reserved = {}
    job.save(update_fields=["state", "error", "result", "finished", "progress", "message", "reserved"])
    publish_job(job)
    from webvirt.accounts.audit import Target, record
    from webvirt.accounts.policy import Actor

    target = Target(object_type="job", object_id=str(job.pk), object_repr=job.title)
    outcome = "ok" if state == Job.SUCCEEDED else "failed"
    record(Actor(user=job.user, via="task"), f"job.{job.kind}", target, outcome, error or state)


def undo(job: Job) -> list[str]:
    """Remove everything `job` recorded as created, newest first. Safe to run twice."""
    from webvirt.jobs.cleanup import remove_object

    job.refresh_from_db()
    removed = []
    for obj in reversed(job.created_objects):
        try:
            if remove_object(obj):
                removed.append(f"{obj['kind']} {obj['key']}")
        except VirtError as exc:
            log.warning("job %s: could not remove %s: %s", job.pk, obj, exc)
    Job.objects.filter(pk=job.pk).update(created_objects=[])
    if removed:
        log.info("job %s: removed %s", job.pk, ", ".join(removed))
    return removed


def reap_stale() -> list[int]:
    """Fail running jobs whose worker died (no heartbeat) and remove what they half-created."""
    cutoff = timezone.now() - timedelta(seconds=STALE_SECONDS)
    reaped = []
    for job in Job.objects.filter(state=Job.RUNNING, heartbeat__lt=cutoff):
        # Claim the failure atomically, so two reapers never undo the same job at once.
        if Job.objects.filter(pk=job.pk, state=Job.RUNNING, heartbeat__lt=cutoff).update(
                state=Job.FAILED, finished=timezone.now(), reserved={},
                error="The worker running this job stopped; what it had created was removed.",
                message="Failed: its worker stopped.") != 1:
            continue
        undo(job)
        job.refresh_from_db()
        publish_job(job)
        reaped.append(job.pk)
    return reaped


def run_inline(job: Job) -> Any:
    """Run a job in this process (tests, and eager mode)."""
    return execute(job.pk)
