"""Celery tasks: thin shells around webvirt.jobs.runner."""

from __future__ import annotations

from celery import Task, shared_task

from webvirt.jobs import runner


@shared_task(name="webvirt.jobs.run", bind=True, acks_late=True, reject_on_worker_lost=False)
def run_job(self: Task, job_id: int) -> str | None:
    return runner.execute(job_id, worker=self.request.hostname or "")


@shared_task(name="webvirt.jobs.reap")
def reap_stale_jobs() -> list[int]:
    return runner.reap_stale()
