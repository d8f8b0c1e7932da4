"""Jobs over two real Celery workers (acks_late, prefetch 1) on libvirt's test driver through the daemon.

Both workers run jobs; one killed with SIGKILL in the middle of a job leaves that job to the reaper
(a real beat process), which fails it within a minute and removes what it had made while the other
worker goes on working; and when the broker hands the dead worker's unacknowledged message out again
(as Redis's visibility timeout does), the job is not run a second time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests import live
from tests.catalog.conftest import (  # noqa: F401
    base_volume,
    cleanup_clones,
    clone,
    domain_names,
    pool_volumes,
    template,
    template_source,
)
from tests.snapshots.conftest import snap_domain, take  # noqa: F401
from webvirt import kv
from webvirt.celery import app
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job
from webvirt.jobs.tasks import run_job

pytestmark = pytest.mark.django_db(transaction=True)
WORKERS = ("worker-a", "worker-b")
REAPED_WITHIN = 60.0  # seconds from the kill: STALE_SECONDS (30) + beat's period (15) + slack


def node(name: str) -> str:
    """The Celery node name tests/live.py gives a worker started as `name`."""
    return f"{name}-{os.getpid()}@{socket.gethostname()}"


def ran_on(job: Job) -> str:
    """Which of WORKERS ran `job`, by the node name the runner recorded on it."""
    return next(name for name in WORKERS if job.worker.startswith(f"{node(name)}:"))


def finished(job_ids: list[int], timeout: float = 60) -> list[Job]:
    live.wait_for(lambda: not Job.objects.filter(pk__in=job_ids, state__in=Job.ACTIVE).exists(), timeout,
               f"jobs {job_ids} finished")
    return list(Job.objects.filter(pk__in=job_ids).order_by("pk"))


def in_broker(job_id: int) -> list[str]:
    """Where the broker (kombu's Redis transport) holds a message running `job_id`: "queued" (in our
    queue's list) and/or "unacked:<delivery tag>" (delivered to a worker that has not acknowledged it)."""
    redis = kv.client()

    def runs_it(message: dict) -> bool:
        headers = message.get("headers", {})
        return headers.get("task") == "webvirt.jobs.run" and headers.get("argsrepr") == f"({job_id},)"

    places = ["queued" for raw in redis.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1) if runs_it(json.loads(raw))]
    for tag, raw in redis.hscan_iter("unacked"):
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == settings.CELERY_TASK_DEFAULT_QUEUE and runs_it(message):
            places.append(f"unacked:{tag.decode()}")
    return places


def taken_from_broker(job_id: int) -> bool:
    """The broker holds no message for `job_id`, and still none a second later (kombu pops a message
    from the queue before it files it as unacknowledged: one look could fall between the two)."""
    if in_broker(job_id):
        return False
    time.sleep(1)
    return not in_broker(job_id)


def redeliver(tag: str) -> None:
    """What the visibility timeout does to an unacknowledged message an hour later, now: kombu's own
    restore puts it back in the queue for any worker to take."""
    with app.connection_for_write() as connection:
        connection.default_channel.qos.restore_by_tag(tag, leftmost=True)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[dict[str, live.Process]]:
    """Two workers and beat, on the test database and this run's queue; all stopped afterwards."""
    started = {name: live.start_worker(tmp_path, name=name) for name in WORKERS}
    started["beat"] = live.start_beat(tmp_path)
    try:
        live.wait_for(lambda: len(app.control.ping(destination=[node(n) for n in WORKERS], timeout=1)) == 2, 60,
                   "both workers answer")
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_jobs_spread_over_two_workers_and_a_killed_ones_job_is_reaped_and_never_run_again(
        admin, template, snap_domain, test_conn, processes):  # noqa: F811
    prefix = template.name
    # Several clone and snapshot jobs at once: both workers take some.
    jobs = [clone(admin, template, count=3, pattern=f"{prefix}-c{i}-{{n}}").json()["job"] for i in range(4)]
    jobs += [take(admin, snap_domain(), name="before").json()["job"] for _ in range(3)]
    done = finished(jobs)
    assert [job.state for job in done] == [Job.SUCCEEDED] * 7, [(job.kind, job.error) for job in done]
    assert {ran_on(job) for job in done} == set(WORKERS), [job.worker for job in done]
    assert {job.attempts for job in done} == {1}

    # A long clone job; its worker is killed once the job has made something.
    big = clone(admin, template, count=50, pattern=f"{prefix}-big-{{n}}", mode="full", start=True).json()["job"]
    # Wait for a domain on the host itself: the job tracks each one just before defining it, and
    # clones in parallel threads, so two tracked domains do not mean that one is defined yet.
    live.wait_for(lambda: domain_names(test_conn, f"{prefix}-big-"), 60, "the big job made a domain", interval=0.02)
    job = Job.objects.get(pk=big)
    victim = ran_on(job)
    [survivor] = set(WORKERS) - {victim}
    processes[victim].signal(signal.SIGKILL)
    processes[victim].proc.wait(10)
    killed_at = time.monotonic()
    job.refresh_from_db()
    assert job.state == Job.RUNNING, f"the job ended before its worker was killed: {job.state}"
    [unacked] = in_broker(big)  # acks_late: the dead worker's message is still the broker's
    assert unacked.startswith("unacked:")

    # The other worker goes on working meanwhile.
    more = [clone(admin, template, count=2, pattern=f"{prefix}-m-{{n}}").json()["job"],
            take(admin, snap_domain(), name="meanwhile").json()["job"]]
    assert {(job.state, ran_on(job)) for job in finished(more)} == {(Job.SUCCEEDED, survivor)}
    assert Job.objects.get(pk=big).state == Job.RUNNING  # not yet given up: its heartbeat is recent

    # Beat's reaper fails the job within a minute of the kill and removes what it had made.
    live.wait_for(lambda: Job.objects.get(pk=big).state != Job.RUNNING, REAPED_WITHIN + 5, "the job was reaped", 0.5)
    reaped_after = time.monotonic() - killed_at
    print(f"reaped {reaped_after:.0f} s after the kill")
    job.refresh_from_db()
    assert job.state == Job.FAILED and "worker running this job stopped" in job.error
    assert reaped_after < REAPED_WITHIN
    # The reaper claims the failure first, then removes the job's objects (8 here) and empties its list.
    live.wait_for(lambda: Job.objects.get(pk=big).created_objects == [], 60, "the reaper removed what the job made",
                  0.5)
    job.refresh_from_db()
    assert job.reserved == {}
    assert domain_names(test_conn, f"{prefix}-big-") == [] and pool_volumes(test_conn, f"{prefix}-big-") == []
    assert not Domain.objects.filter(name__startswith=f"{prefix}-big-").exists()

    # The broker gives the dead worker's message out again: the survivor takes it and runs nothing.
    redeliver(unacked.removeprefix("unacked:"))
    live.wait_for(lambda: taken_from_broker(big), 30, "the redelivered message was taken and acknowledged")
    # A finished job delivered twice (a client retrying, a duplicate message) is not run again either.
    twice = done[0].pk
    run_job.delay(twice)
    live.wait_for(lambda: taken_from_broker(twice), 30, "the duplicate message was taken and acknowledged")
    again = Job.objects.get(pk=big)
    assert (again.state, again.attempts, again.worker, again.finished) == (Job.FAILED, 1, job.worker, job.finished)
    assert domain_names(test_conn, f"{prefix}-big-") == []
    first = Job.objects.get(pk=twice)
    assert (first.state, first.attempts, first.worker, first.finished) == (
        Job.SUCCEEDED, 1, done[0].worker, done[0].finished)
    assert processes[survivor].proc.poll() is None
