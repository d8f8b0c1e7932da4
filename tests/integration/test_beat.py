"""Celery beat itself: a real `celery -A webvirt beat` process, with short intervals from the
environment (WEBVIRT_EXPIRE_INTERVAL, WEBVIRT_REAP_INTERVAL), sends the periodic tasks to a real
worker, which removes an expired self-service clone and fails a running job whose heartbeat went
stale. The test never calls either task: it only waits for their effect.

On libvirt's test driver through the daemon, with the run's own database, Redis prefix and queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

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
from tests.live import wait_for
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)
INTERVAL = 2  # seconds between two runs of each of the two beat entries under test
WAIT = 60.0  # generous: beat, the broker and the worker all take their turn


@pytest.fixture
def beat(live_stack) -> Iterator[live.Process]:  # type: ignore[no-untyped-def]
    """Celery beat beside the live stack, its schedule file in the test's own folder, the reaper and
    the expiry every INTERVAL seconds."""
    process = live.start_beat(live_stack.log_dir, "info", WEBVIRT_REAP_INTERVAL=str(INTERVAL),
                              WEBVIRT_EXPIRE_INTERVAL=str(INTERVAL))
    yield process
    process.stop()


def sent(beat: live.Process, task: str) -> bool:
    """Has beat logged sending `task` (at -l info it logs every task it sends)?"""
    return any("Sending due task" in line and f"({task})" in line for line in beat.output().splitlines())


def test_beat_removes_an_expired_clone_and_fails_a_job_whose_worker_stopped(  # type: ignore[no-untyped-def]
        template, bob, worker, beat, test_conn):  # noqa: F811
    # The clone is made by the real worker, as in production, and lives for a day.
    template.users.add(bob)
    response = clone(bob, template, expires_at=(timezone.now() + timedelta(days=1)).isoformat())
    assert response.status_code == 202, response.json()
    job_id = response.json()["job"]
    wait_for(lambda: Job.objects.get(pk=job_id).state not in Job.ACTIVE, timeout=WAIT)
    assert Job.objects.get(pk=job_id).state == Job.SUCCEEDED, Job.objects.get(pk=job_id).error
    mine = Domain.objects.get(template=template, owner=bob)
    assert domain_names(test_conn, template.name) == [mine.name]
    assert pool_volumes(test_conn, template.name) == [f"{mine.name}-vda.qcow2"]
    # Beat has already run the expiry a few times by now, and the clone is still there: not yet due.
    wait_for(lambda: sent(beat, "webvirt.catalog.expire"), timeout=WAIT)
    assert Domain.objects.filter(pk=mine.pk).exists()

    # A job "running" on a worker that stopped: its heartbeat is older than the reaper allows. Beside
    # it, one whose worker is alive (a heartbeat just now), which the reaper must leave alone.
    stale_at = timezone.now() - timedelta(seconds=runner.STALE_SECONDS * 10)
    stale = Job.objects.create(kind="clone", title="Its worker stopped", user=bob, state=Job.RUNNING,
                               started=stale_at, heartbeat=stale_at)
    alive = Job.objects.create(kind="clone", title="Its worker is alive", user=bob, state=Job.RUNNING,
                               started=timezone.now(), heartbeat=timezone.now())
    # The clone's expiry passes.
    Domain.objects.filter(pk=mine.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    wait_for(lambda: Job.objects.get(pk=stale.pk).state == Job.FAILED, timeout=WAIT)
    stale.refresh_from_db()
    assert stale.message == "Failed: its worker stopped." and stale.finished is not None
    assert "worker running this job stopped" in stale.error
    assert Job.objects.get(pk=alive.pk).state == Job.RUNNING

    wait_for(lambda: not Domain.objects.filter(pk=mine.pk).exists(), timeout=WAIT)
    assert domain_names(test_conn, template.name) == []
    assert pool_volumes(test_conn, template.name) == []
    # The removal is recorded as it ends, just after the row is gone.
    removal = wait_for(lambda: AuditEntry.objects.filter(action="domain.remove", object_repr=mine.name).first(),
                       timeout=WAIT)
    assert (removal.via, removal.outcome) == ("task", "ok") and removal.detail.startswith("expired")

    # Both were beat's doing: it sent the two tasks, and the worker ran them.
    assert sent(beat, "webvirt.jobs.reap") and sent(beat, "webvirt.catalog.expire")
    assert "Traceback" not in beat.output(), beat.output()
