"""Starting, cancelling and retrying jobs, shared by views, API and other apps' services."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.hosts.models import Host
from webvirt.jobs import kinds
from webvirt.jobs.models import Job
from webvirt.virt import errors
from webvirt.virt.errors import VirtError


def create_job(actor: Actor, kind: str, title: str, *, params: dict, host: Host | None = None,
               target: tuple[str, str, str] = ("", "", ""), reserved: dict | None = None) -> Job:
    """Write a queued Job row and hand it to a worker once the transaction commits."""
    from webvirt.jobs.tasks import run_job

    job = Job.objects.create(kind=kind, title=title[:200], user=actor.user if actor.user.is_authenticated else None,
                             host=host, params=params, reserved=reserved or {}, target_type=target[0],
                             target_id=target[1], target_repr=target[2][:200], message="Waiting for a worker.")
    transaction.on_commit(lambda: run_job.delay(job.pk))
    return job


def cancel_job(actor: Actor, job: Job) -> Job:
    """Cancel a queued job at once; a running one stops at its next step and removes what it made."""
    with audited(actor, "job.cancel", job):
        policy.require(actor.user, policy.CHANGE, job)
        if not job.is_active:
            raise VirtError(f"Job #{job.pk} has already {job.get_state_display()}; there is nothing to cancel.",
                            errors.STATE)
        now = timezone.now()
        if Job.objects.filter(pk=job.pk, state=Job.QUEUED).update(
                state=Job.CANCELLED, cancel_requested=True, finished=now, reserved={},
                message="Cancelled before it started.") == 0:
            Job.objects.filter(pk=job.pk).update(cancel_requested=True, message="Cancelling…")
        job.refresh_from_db()
    from webvirt.jobs.runner import publish_job

    publish_job(job)
    return job


def retry_job(actor: Actor, job: Job) -> Job:
    """Start the same operation again as a new job (every check runs again)."""
    policy.require(actor.user, policy.CHANGE, job)
    if job.is_active:
        raise VirtError(f"Job #{job.pk} is still {job.get_state_display()}.", errors.STATE)
    starter = kinds.retrier(job.kind)
    if starter is None:
        raise VirtError(f"Jobs of kind '{job.kind}' cannot be retried.", errors.INVALID)
    return starter(actor, job.params)
