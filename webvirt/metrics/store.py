"""Writing samples, rolling them up, pruning, and reading series back for graphs.

The collector (in the event watcher, which holds each host's connection) calls `record` once per host
and pass; the beat task calls `rollup_and_prune` every minute. Rows are written in batches; a rollup
re-aggregates the current and the previous step of each tier, so running it twice changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Max, Sum

from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.metrics.models import SERIES, TIERS, Point, Tier
from webvirt.virt import stats
from webvirt.virt.stats import DomainReading, HostReading

UPDATE_FIELDS = ["n", *SERIES, *(f"{s}_max" for s in SERIES)]


@dataclass
class Memory:
    """What a host's collector remembers between passes: the last readings, to make rates."""

    domains: dict[str, DomainReading] = field(default_factory=dict)
    host: HostReading | None = None


@dataclass
class Sample:
    kind: str
    obj: int
    owner: int | None
    t: int
    values: dict[str, float | None]

    def message(self) -> dict[str, Any]:
        """The live event for pages that show this object (webvirt.events, group `group`)."""
        return {"type": "metrics", "kind": self.kind, "id": self.obj, "t": self.t,
                "values": {k: round(v, 2) for k, v in self.values.items() if v is not None}}

    @property
    def group(self) -> str:
        return group_name(self.kind, self.obj)


def group_name(kind: str, obj: int) -> str:
    return f"webvirt.metrics.{kind}{obj}"


def record(host: Host, memory: Memory, host_now: HostReading, domains_now: list[DomainReading]) -> list[Sample]:
    """Turn one pass's readings into samples: rates against the previous pass, tier-0 rows, the latest
    figures on the domains' cache rows. Returns the samples, for the live graphs."""
    t = int(host_now.at) - int(host_now.at) % TIERS[0].step
    rows = (Domain.objects.filter(host=host, uuid__in=[r.uuid for r in domains_now])
            .values_list("uuid", "pk", "owner_id", "cpu_percent", "memory_used_mib"))
    known = {uuid: (pk, owner, (cpu, used)) for uuid, pk, owner, cpu, used in rows}
    samples = [Sample(Point.HOST, host.pk, None, t, stats.host_rates(memory.host, host_now))]
    changed: list[tuple[float | None, float | None, int]] = []
    for reading in domains_now:
        if reading.uuid not in known:
            continue  # not in the cache yet: the watcher's event for it comes first
        pk, owner, shown = known[reading.uuid]
        values = stats.domain_rates(memory.domains.get(reading.uuid), reading, host_now.cpus)
        if any(v is not None for v in values.values()):  # a driver without figures (the test driver) stores none
            samples.append(Sample(Point.DOMAIN, pk, owner, t, values))
        if (values["cpu_percent"], values["memory_mib"]) != shown:
            changed.append((values["cpu_percent"], values["memory_mib"], pk))
    memory.host, memory.domains = host_now, {r.uuid: r for r in domains_now}
    with transaction.atomic():  # one commit per pass, not one per statement
        Point.objects.bulk_create([_point(s) for s in samples], batch_size=500, update_conflicts=True,
                                  unique_fields=["kind", "obj", "tier", "t"], update_fields=UPDATE_FIELDS)
        # The list's CPU and memory columns: the latest figures, written only where they changed; none for a
        # domain that no longer runs. One prepared UPDATE per row: bulk_update's CASE WHEN per row costs
        # most of a pass with a thousand domains.
        if changed:
            with connection.cursor() as cursor:
                cursor.executemany(_SET_LATEST, changed)
        Domain.objects.filter(host=host).exclude(uuid__in=known).exclude(cpu_percent=None, memory_used_mib=None).update(
            cpu_percent=None, memory_used_mib=None)
    return samples


_SET_LATEST = (f"UPDATE {Domain._meta.db_table} SET {Domain._meta.get_field('cpu_percent').column} = %s, "
               f"{Domain._meta.get_field('memory_used_mib').column} = %s WHERE {Domain._meta.pk.column} = %s")


def _point(sample: Sample) -> Point:
    point = Point(kind=sample.kind, obj=sample.obj, tier=0, t=sample.t, n=1)
    for name, value in sample.values.items():
        setattr(point, name, value)
        setattr(point, f"{name}_max", value)
    return point


# Rollups and retention --------------------------------------------------------------------------

def rollup_and_prune(now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    counts = {f"tier{tier.level}": rollup(tier, now) for tier in TIERS[1:]}
    counts["pruned"] = prune(now)
    return counts


def rollup(tier: Tier, now: float) -> int:
    """Aggregate the tier below into `tier`'s steps from its newest one (re-done: it may have grown) up to
    the current one, so a beat that stopped for a while leaves no gap (as far back as the tier below
    keeps). An upsert: safe to repeat."""
    below = TIERS[tier.level - 1]
    current = int(now) - int(now) % tier.step
    newest = Point.objects.filter(tier=tier.level).aggregate(newest=Max("t"))["newest"]
    oldest = current - (below.keep - below.keep % tier.step)
    start = max(oldest, min(current - tier.step, newest if newest is not None else current - tier.step))
    aggregates: dict[str, Any] = {"n_sum": Sum("n")}
    for name in SERIES:
        aggregates[name] = Avg(name)
        aggregates[f"{name}_max"] = Max(f"{name}_max")
    points = []
    for bucket in range(start, current + tier.step, tier.step):
        grouped = (Point.objects.filter(tier=below.level, t__gte=bucket, t__lt=bucket + tier.step)
                   .values("kind", "obj").annotate(**aggregates).order_by())
        for row in grouped:
            values: dict[str, Any] = dict(row)  # kind and obj, the sum of samples, each figure's aggregates
            n = int(values.pop("n_sum"))
            points.append(Point(tier=tier.level, t=bucket, n=n, **values))
    Point.objects.bulk_create(points, batch_size=500, update_conflicts=True, unique_fields=["kind", "obj", "tier", "t"],
                              update_fields=UPDATE_FIELDS)
    return len(points)


def prune(now: float) -> int:
    deleted = 0
    for tier in TIERS:
        deleted += Point.objects.filter(tier=tier.level, t__lt=int(now) - tier.keep).delete()[0]
    # A removed domain's (or host's) history goes after the grace period since its last sample.
    cutoff = int(now - timedelta(days=settings.WEBVIRT_METRICS_KEEP_REMOVED_DAYS).total_seconds())
    present = {Point.DOMAIN: Domain.objects.values_list("pk", flat=True),
               Point.HOST: Host.objects.values_list("pk", flat=True)}
    for kind, ids in present.items():
        gone = (Point.objects.filter(kind=kind).exclude(obj__in=ids).values("obj")
                .annotate(last=Max("t")).filter(last__lt=cutoff).values_list("obj", flat=True))
        deleted += Point.objects.filter(kind=kind, obj__in=list(gone)).delete()[0]
    return deleted


# Reading ----------------------------------------------------------------------------------------

RANGES = {"1h": (3600, 0), "24h": (86400, 1), "7d": (7 * 86400, 2), "30d": (30 * 86400, 3), "1y": (365 * 86400, 3)}


def series(kind: str, obj: int, range_name: str, names: tuple[str, ...], now: float | None = None) -> dict[str, Any]:
    """`{step, series: {name: [[t, avg, max], ...]}}` for a range: each range reads the finest tier that
    covers it."""
    seconds, level = RANGES[range_name]
    now = time.time() if now is None else now
    rows = (Point.objects.filter(kind=kind, obj=obj, tier=level, t__gte=int(now) - seconds).order_by("t")
            .values_list("t", *[f for n in names for f in (n, f"{n}_max")]))
    result: dict[str, list[list[float | None]]] = {name: [] for name in names}
    for row in rows:
        for i, name in enumerate(names):
            result[name].append([row[0], _round(row[1 + 2 * i]), _round(row[2 + 2 * i])])
    return {"step": TIERS[level].step, "range": range_name, "series": result}


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None
