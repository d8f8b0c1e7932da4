"""Fixtures for usage metrics: rows of the one history table, written directly with a fake clock, and
hosts and domains as plain cache rows (the API, /metrics and the rollups read only the database)."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.people import unique
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.metrics.models import SERIES, Point

# A fake "now": a multiple of every tier's step (10 s, 1 min, 30 min, 6 h).
T0 = 21600 * 80_000


def point(kind: str, obj: int, tier: int, t: int, n: int = 1, **values: float | None) -> Point:
    """A history row; `x=1.5` sets figure x's average, `x_max=...` its maximum (by default the average)."""
    row = Point(kind=kind, obj=obj, tier=tier, t=t, n=n)
    for name, value in values.items():
        setattr(row, name, value)
        if not name.endswith("_max") and f"{name}_max" not in values:
            setattr(row, f"{name}_max", value)
    return row


def insert(*rows: Point) -> None:
    Point.objects.bulk_create(rows)


def every_figure(value: float) -> dict[str, float]:
    return {name: value for name in SERIES}


@pytest.fixture
def make_host(db) -> Callable[..., Host]:  # type: ignore[no-untyped-def]
    """A host row (nothing connects to it here)."""
    return lambda: Host.objects.create(name=unique("mhost"), uri="test:///default", status=Host.ONLINE)


@pytest.fixture
def make_domain(db) -> Callable[..., Domain]:  # type: ignore[no-untyped-def]
    """A running domain's cache row on `host`, owned by `owner`."""

    def make(host: Host, owner: Any = None, **fields: Any) -> Domain:
        fields = {"uuid": str(uuidlib.uuid4()), "name": unique("mdom"), "state": "running", "vcpus": 1,
                  "memory_mib": 256, **fields}
        return Domain.objects.create(host=host, owner=owner, **fields)

    return make
