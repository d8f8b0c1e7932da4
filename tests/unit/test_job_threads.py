"""A job's own threads give their database connections back when they end, failed or not.

With PostgreSQL's pool a connection a thread keeps is lost to every other for the life of the
process (a Celery worker's, for days): a few dozen jobs later every query waited ten seconds and
failed with "couldn't get a connection". Here every connection opened by another thread while a job
with a thread pool runs must be closed when the job has ended, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from tests.people import api_for
from webvirt.domains.models import Domain
from webvirt.jobs.models import Job
from webvirt.jobs.runner import run_inline


@pytest.fixture
def thread_connections() -> Iterator[list[BaseDatabaseWrapper]]:
    """Every database connection opened by a thread other than the test's own while the test runs."""
    opened: list[BaseDatabaseWrapper] = []
    main = threading.get_ident()

    def record(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if threading.get_ident() != main:
            opened.append(connection)

    connection_created.connect(record)
    yield opened
    connection_created.disconnect(record)


@pytest.mark.django_db(transaction=True)
def test_a_bulk_jobs_threads_close_their_connections_even_for_domains_that_fail(
        domain_row: Callable[..., Domain], admin: Any, thread_connections: list[BaseDatabaseWrapper]) -> None:
    running = [domain_row("threads", start=True) for _ in range(5)]
    stopped = domain_row("threads")  # shutting it down fails: it is not running
    response = api_for(admin).post("/api/v1/domains/bulk/", {"ids": [r.pk for r in [*running, stopped]],
                                                             "action": "shutdown"}, format="json")
    job = Job.objects.get(pk=response.json()["job"])

    run_inline(job)

    job.refresh_from_db()
    assert job.result["message"] == "Shut down: 5 of 6 done, 0 skipped, 1 failed."
    assert len(thread_connections) >= 2  # the pool's threads did use the database
    assert [c for c in thread_connections if c.connection is not None] == []
