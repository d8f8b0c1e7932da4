"""A bulk shutdown of 200 test-driver domains through the API, run by a real Celery worker beside the
event watcher (which stores and publishes every state change meanwhile): from the POST to the job's
success in under 10 s. The figure is printed (`-s`) for the README and bench/waves.py.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import libvirt
import pytest

from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)
DOMAINS = 200
GOAL_SECONDS = 10.0


def run(api: Any, body: dict) -> tuple[Job, float]:
    """POST a bulk request; the finished job and the seconds from the POST to its end."""
    started = time.monotonic()
    response = api.post("/api/v1/domains/bulk/", body, format="json")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job"])
    while job.is_active and time.monotonic() - started < 120:
        time.sleep(0.05)
        job.refresh_from_db()
    return job, time.monotonic() - started


def test_a_bulk_shutdown_of_200_domains_ends_within_10_seconds(
        worker: Any, api: Any, test_host: Any, make_test_domain: Callable[..., libvirt.virDomain],
        test_conn: libvirt.virConnect) -> None:
    tag = uuidlib.uuid4().hex[:6]
    doms = [make_test_domain(f"bulk200-{tag}-{n:03}", start=True, memory_mib=64) for n in range(DOMAINS)]
    warm = make_test_domain(f"bulkwarm-{tag}", start=True)
    sync_host(test_host)
    assert Domain.objects.filter(name__startswith=f"bulk200-{tag}", state="running").count() == DOMAINS
    # The worker has just been started: one small job first, so the figure is not its boot time.
    assert run(api, {"filter": {"search": f"bulkwarm-{tag}"}, "action": "shutdown"})[0].state == Job.SUCCEEDED
    assert not warm.isActive()

    job, took = run(api, {"filter": {"search": f"bulk200-{tag}"}, "action": "shutdown"})

    print(f"\nbulk shutdown of {DOMAINS} test-driver domains: {took:.2f} s from the POST to the job's success "
          f"(the job ran {job.duration or 0:.2f} s)")
    assert (job.state, len(job.params["ids"])) == (Job.SUCCEEDED, DOMAINS), job.error
    assert job.result["message"] == f"Shut down: {DOMAINS} of {DOMAINS} done, 0 skipped, 0 failed."
    assert sum(bool(d.isActive()) for d in doms) == 0
    assert took < GOAL_SECONDS, f"{took:.1f} s"
