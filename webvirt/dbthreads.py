"""A thread that touches the database gives its connection back when its work ends, however it ends.

With PostgreSQL each process draws connections from a pool (`WEBVIRT_DB_POOL_SIZE`). Django opens one
per thread and hands it back only when it is closed, so a job's helper thread that ends (or fails)
without closing keeps its connection out of the pool for good: after a few dozen such threads every
query in the process waits, then fails with "couldn't get a connection". Every function a job runs in a
thread of its own, or in a thread pool, goes through `closing_connections`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from django.db import connections

P = ParamSpec("P")
T = TypeVar("T")


def closing_connections(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn`, closing (with a pool: giving back) this thread's database connections when it returns or raises."""

    @wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return run
