"""The history store (webvirt.metrics.store): one pass's samples, rollups and pruning with a fake clock,
series read back per range, and what a domain's history costs in storage."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.metrics.conftest import T0, every_figure, insert, point
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.metrics import store
from webvirt.metrics.models import TIERS, Point
from webvirt.virt import stats
from webvirt.virt.stats import DomainReading, HostReading

DAY = 86400
STEP = TIERS[0].step


def with_counters(readings: list[DomainReading], cpu_ns: dict[str, int], memory_kib: int = 512 * 1024
                  ) -> list[DomainReading]:
    """The test driver's readings (state only) given the counters a QEMU domain would have."""
    for r in readings:
        r.counters = {"cpu_ns": cpu_ns.get(r.uuid, 0), "rx_bytes": 0}
        r.memory_kib = memory_kib
    return readings


def point_inserts(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].startswith(f'INSERT INTO "{Point._meta.db_table}"')]


# record: one pass ---------------------------------------------------------------------------------

def test_a_pass_on_the_test_driver_writes_tier_0_in_one_batch_and_the_latest_figures(
        test_conn, test_host, make_test_domain, bob):
    a, b, off = make_test_domain(start=True), make_test_domain(start=True), make_test_domain()
    sync_host(test_host)
    rows = {d.uuid: d for d in Domain.objects.filter(host=test_host)}
    Domain.objects.filter(pk=rows[a.UUIDString()].pk).update(owner=bob)
    memory = store.Memory()

    first = stats.read_domains(test_conn, T0 + 3)
    with CaptureQueriesContext(connection) as queries:
        samples = store.record(test_host, memory, stats.read_host(test_conn, T0 + 3), with_counters(first, {}))

    assert len(point_inserts(queries)) == 1  # the whole pass, host and domains, in one statement
    sampled = {r.uuid for r in first if r.uuid in rows}
    assert {a.UUIDString(), b.UUIDString()} <= sampled and off.UUIDString() not in sampled
    assert sorted((s.kind, s.obj) for s in samples) == sorted(
        [("h", test_host.pk)] + [("d", rows[u].pk) for u in sampled])
    assert Point.objects.filter(tier=0).count() == len(samples)
    assert set(Point.objects.values_list("t", "n").distinct()) == {(T0, 1)}  # on the step's boundary
    row_a = Domain.objects.get(pk=rows[a.UUIDString()].pk)
    assert row_a.cpu_percent is None  # a first reading has no rate yet
    assert row_a.memory_used_mib == 512.0  # memory is a reading, known at once

    second = with_counters(stats.read_domains(test_conn, T0 + 13),
                           {a.UUIDString(): 5 * 10**9, b.UUIDString(): 10**9})  # 5 s and 1 s of CPU in 10 s
    samples = store.record(test_host, memory, stats.read_host(test_conn, T0 + 13), second)

    row_a, row_b = (Domain.objects.get(pk=rows[d.UUIDString()].pk) for d in (a, b))
    assert row_a.cpu_percent == pytest.approx(50.0)  # 0.5 of its one vCPU
    assert row_b.cpu_percent == pytest.approx(10.0)
    sample_a = next(s for s in samples if s.obj == row_a.pk)
    assert (sample_a.kind, sample_a.owner, sample_a.t) == ("d", bob.pk, T0 + 10)  # keyed by the Domain row
    assert sample_a.group == f"webvirt.metrics.d{row_a.pk}"
    message = sample_a.message()
    assert message["type"] == "metrics" and (message["kind"], message["id"], message["t"]) == ("d", row_a.pk, T0 + 10)
    assert message["values"]["cpu_percent"] == 50.0 and message["values"]["memory_mib"] == 512.0
    assert "disk_read_bps" not in message["values"]  # unknown figures are left out, not sent as null
    stored = Point.objects.get(kind="d", obj=row_a.pk, tier=0, t=T0 + 10)
    assert (stored.cpu_percent, stored.cpu_percent_max, stored.cpu_host_percent) == pytest.approx(
        (50.0, 50.0, 50.0 / test_conn.getInfo()[2]))  # and of the host's CPUs

    b.destroy()  # b stops running: its columns in the list are cleared at the next pass
    third = with_counters(stats.read_domains(test_conn, T0 + 23), {a.UUIDString(): 6 * 10**9})
    store.record(test_host, memory, stats.read_host(test_conn, T0 + 23), third)

    row_a, row_b = (Domain.objects.get(pk=rows[d.UUIDString()].pk) for d in (a, b))
    assert (row_b.cpu_percent, row_b.memory_used_mib) == (None, None)
    assert row_a.cpu_percent == pytest.approx(10.0) and row_a.memory_used_mib == 512.0
    assert not Point.objects.filter(kind="d", obj=row_b.pk, t=T0 + 20).exists()


def test_a_domain_that_stops_after_its_first_pass_loses_its_memory_figure_too(test_host, make_domain):
    """After one pass a domain has a memory figure but no CPU rate yet; if it stops then, neither stays."""
    row = make_domain(test_host)
    memory = store.Memory()
    store.record(test_host, memory, HostReading(at=T0 + 1), [DomainReading(uuid=row.uuid, at=T0 + 1,
                                                                            memory_kib=300 * 1024)])
    row.refresh_from_db()
    assert (row.cpu_percent, row.memory_used_mib) == (None, 300.0)

    store.record(test_host, memory, HostReading(at=T0 + 11), [])  # it no longer runs

    row.refresh_from_db()
    assert (row.cpu_percent, row.memory_used_mib) == (None, None)


def test_the_test_drivers_figureless_readings_store_no_domain_rows(test_conn, test_host, make_test_domain):
    """The test driver reports state only: the pass keeps the host's row and writes nothing empty."""
    make_test_domain(start=True)
    sync_host(test_host)
    memory = store.Memory()
    for at in (T0 + 1, T0 + 11):
        samples = store.record(test_host, memory, stats.read_host(test_conn, at), stats.read_domains(test_conn, at))
        assert [(s.kind, s.obj) for s in samples] == [("h", test_host.pk)]
    assert list(Point.objects.values_list("kind", "t")) == [("h", T0), ("h", T0 + 10)]
    assert not Domain.objects.filter(host=test_host).exclude(cpu_percent=None, memory_used_mib=None).exists()


def test_a_pass_again_in_the_same_step_replaces_its_rows(test_host):
    domain = Domain.objects.filter(host=test_host).first()
    assert domain is not None
    memory = store.Memory()
    for at, memory_kib in ((T0 + 1, 100 * 1024), (T0 + 2, 200 * 1024)):
        store.record(test_host, memory, HostReading(at=at),
                     [DomainReading(uuid=domain.uuid, at=at, memory_kib=memory_kib)])
    [only] = Point.objects.filter(kind="d", obj=domain.pk)
    assert (only.t, only.memory_mib) == (T0, 200.0)


def test_a_migrated_domain_keeps_its_series_on_its_new_host(test_host, make_host, make_domain, bob):
    """Samples are keyed by the Domain row, which follows the domain to its new host (same pk)."""
    row = make_domain(test_host, owner=bob)
    source, target = store.Memory(), store.Memory()

    def reading(at: float, cpu_ns: int) -> DomainReading:
        return DomainReading(uuid=row.uuid, at=at, vcpus=1, memory_kib=256 * 1024, counters={"cpu_ns": cpu_ns})

    store.record(test_host, source, HostReading(at=T0 + 1), [reading(T0 + 1, 0)])
    store.record(test_host, source, HostReading(at=T0 + 11), [reading(T0 + 11, 2 * 10**9)])
    destination = make_host()
    Domain.objects.filter(pk=row.pk).update(host=destination)  # what the migration job does to the row

    # The source's next pass may still list it (an outgoing migration): it no longer writes its series.
    store.record(test_host, source, HostReading(at=T0 + 21), [reading(T0 + 21, 3 * 10**9)])
    assert not Point.objects.filter(kind="d", obj=row.pk, t=T0 + 20).exists()
    # The destination's collector has no earlier reading of it: a gap, not a rate against the source's counters.
    [host_sample, sample] = store.record(destination, target, HostReading(at=T0 + 31), [reading(T0 + 31, 10**6)])
    assert (host_sample.kind, host_sample.obj) == ("h", destination.pk)
    assert (sample.obj, sample.owner, sample.values["cpu_percent"]) == (row.pk, bob.pk, None)
    store.record(destination, target, HostReading(at=T0 + 41), [reading(T0 + 41, 10**9 + 10**6)])

    answer = store.series("d", row.pk, "1h", ("cpu_percent", "memory_mib"), now=T0 + 45)
    assert answer["series"]["cpu_percent"] == [[T0, None, None], [T0 + 10, 20.0, 20.0], [T0 + 30, None, None],
                                               [T0 + 40, 10.0, 10.0]]
    assert [t for t, _, _ in answer["series"]["memory_mib"]] == [T0, T0 + 10, T0 + 30, T0 + 40]
    assert Domain.objects.get(pk=row.pk).cpu_percent == pytest.approx(10.0)


# Rollups ------------------------------------------------------------------------------------------

def test_tier_0_rolls_up_into_tier_1_with_averages_and_maxima(db):
    insert(*(point("d", 1, 0, T0 + 10 * i, cpu_percent=10.0 * (i + 1), memory_mib=None if i == 1 else 100.0 * i,
                   memory_mib_max=None if i == 1 else 100.0 * i + 5) for i in range(6)),
           point("d", 2, 0, T0, cpu_percent=99.0),
           point("d", 1, 0, T0 - 70, cpu_percent=1.0))  # two steps back: not this rollup's business

    assert store.rollup(TIERS[1], T0 + 65) == 2

    minute = Point.objects.get(kind="d", obj=1, tier=1, t=T0)
    assert minute.n == 6
    assert (minute.cpu_percent, minute.cpu_percent_max) == pytest.approx((35.0, 60.0))
    assert (minute.memory_mib, minute.memory_mib_max) == pytest.approx((280.0, 505.0))  # a gap does not count
    assert minute.disk_read_bps is None and minute.disk_read_bps_max is None  # never known: stays unknown
    assert Point.objects.get(kind="d", obj=2, tier=1, t=T0).cpu_percent == 99.0
    assert not Point.objects.filter(tier=1, t=T0 - 120).exists()


def test_a_rollup_repeated_changes_nothing_and_takes_in_late_samples_of_the_current_step(db):
    insert(*(point("d", 1, 0, T0 + 10 * i, cpu_percent=float(i)) for i in range(6)),
           point("d", 1, 0, T0 + 60, cpu_percent=50.0))
    store.rollup(TIERS[1], T0 + 65)

    def tier_1() -> list[tuple]:
        return list(Point.objects.filter(tier=1).order_by("t").values_list("t", "n", "cpu_percent", "cpu_percent_max"))

    once = tier_1()
    store.rollup(TIERS[1], T0 + 65)
    assert tier_1() == once == [(T0, 6, 2.5, 5.0), (T0 + 60, 1, 50.0, 50.0)]

    insert(point("d", 1, 0, T0 + 70, cpu_percent=70.0))  # the current minute goes on
    store.rollup(TIERS[1], T0 + 75)
    assert tier_1() == [(T0, 6, 2.5, 5.0), (T0 + 60, 2, 60.0, 70.0)]


def test_a_rollup_after_the_beat_stopped_for_a_while_fills_every_minute_it_missed(db):
    insert(point("d", 1, 1, T0, cpu_percent=1.0))  # the last minute rolled up before the beat stopped
    insert(*(point("d", 1, 0, T0 + 60 * m, cpu_percent=float(m)) for m in range(1, 11)))  # ten minutes on

    store.rollup(TIERS[1], T0 + 10 * 60 + 5)

    minutes = list(Point.objects.filter(tier=1).order_by("t").values_list("t", "cpu_percent"))
    assert minutes == [(T0, 1.0)] + [(T0 + 60 * m, float(m)) for m in range(1, 11)]


def test_tier_1_rolls_up_into_tier_2_and_tier_2_into_tier_3(db):
    insert(*(point("h", 7, 1, T0 + 60 * k, n=6, cpu_percent=float(k), cpu_percent_max=k + 100.0)
             for k in range(30)))
    insert(*(point("h", 8, 2, T0 + 1800 * k, n=180, memory_mib=1000.0 + k, memory_mib_max=2000.0 + k)
             for k in range(12)))

    store.rollup(TIERS[2], T0 + 1800 + 5)
    store.rollup(TIERS[3], T0 + 21600 + 5)

    half_hour = Point.objects.get(kind="h", obj=7, tier=2, t=T0)
    assert (half_hour.n, half_hour.cpu_percent, half_hour.cpu_percent_max) == (180, 14.5, 129.0)
    six_hours = Point.objects.get(kind="h", obj=8, tier=3, t=T0)
    assert (six_hours.n, six_hours.memory_mib, six_hours.memory_mib_max) == (2160, 1005.5, 2011.0)


def test_the_beat_tasks_pass_carries_samples_up_every_tier(make_host):
    host = make_host()
    insert(*(point("h", host.pk, 0, T0 + 10 * i, cpu_percent=10.0 * (i + 1)) for i in range(6)))

    counts = store.rollup_and_prune(T0 + 65)

    assert counts == {"tier1": 1, "tier2": 1, "tier3": 1, "pruned": 0}
    for level in (1, 2, 3):
        row = Point.objects.get(kind="h", obj=host.pk, tier=level, t=T0)
        assert (row.n, row.cpu_percent, row.cpu_percent_max) == (6, 35.0, 60.0), level


# Pruning ------------------------------------------------------------------------------------------

def test_each_tier_keeps_its_own_age(make_host):
    host = make_host()
    now = T0
    for tier in TIERS:
        insert(point("h", host.pk, tier.level, now - tier.keep - tier.step, cpu_percent=1.0),
               point("h", host.pk, tier.level, now - tier.keep, cpu_percent=2.0),
               point("h", host.pk, tier.level, now, cpu_percent=3.0))

    assert store.prune(now) == len(TIERS)

    for tier in TIERS:
        kept = Point.objects.filter(obj=host.pk, tier=tier.level).order_by("t").values_list("t", flat=True)
        assert list(kept) == [now - tier.keep, now], tier.level
    assert [t.keep for t in TIERS] == [3600, DAY, 7 * DAY, 366 * DAY]


def test_a_removed_domains_history_goes_after_the_grace_period(settings, make_host, make_domain):
    settings.WEBVIRT_METRICS_KEEP_REMOVED_DAYS = 2
    host = make_host()
    present = make_domain(host)
    gone_long_ago, gone_lately = present.pk + 1000, present.pk + 1001
    removed_host = host.pk + 1000
    now = T0
    insert(point("d", present.pk, 3, now - 30 * DAY, cpu_percent=1.0),
           point("d", gone_long_ago, 3, now - 5 * DAY, cpu_percent=1.0),
           point("d", gone_long_ago, 3, now - 3 * DAY, cpu_percent=1.0),
           point("d", gone_lately, 3, now - 10 * DAY, cpu_percent=1.0),
           point("d", gone_lately, 3, now - 1 * DAY, cpu_percent=1.0),
           point("h", removed_host, 3, now - 3 * DAY, cpu_percent=1.0),
           point("h", host.pk, 3, now - 3 * DAY, cpu_percent=1.0))

    assert store.prune(now) == 3

    left = sorted(Point.objects.values_list("kind", "obj").distinct())
    assert left == sorted([("d", present.pk), ("d", gone_lately), ("h", host.pk)])
    assert Point.objects.filter(obj=gone_lately).count() == 2  # all of it stays while within the grace period

    settings.WEBVIRT_METRICS_KEEP_REMOVED_DAYS = 0
    store.prune(now)
    assert sorted(Point.objects.values_list("kind", "obj").distinct()) == sorted([("d", present.pk), ("h", host.pk)])


# Reading series ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("range_name", "tier", "step", "ages"), [
    ("1h", 0, 10, [3600, 600, 0]),
    ("24h", 1, 60, [DAY, 3600, 0]),
    ("7d", 2, 1800, [7 * DAY, DAY, 0]),
    ("30d", 3, 21600, [30 * DAY, 7 * DAY, 0]),
    ("1y", 3, 21600, [365 * DAY, 100 * DAY, 0]),
])
def test_each_range_reads_the_tier_that_covers_it(db, range_name, tier, step, ages):
    now = T0
    for level in range(4):  # every tier has rows at every age; only the right one may answer
        insert(*(point("d", 1, level, T0 - age, cpu_percent=level * 1000.0 + i,
                       cpu_percent_max=level * 1000.0 + i + 0.456, memory_mib=123.4567)
                 for i, age in enumerate(ages)))
    insert(point("d", 1, tier, T0 - ages[0] - step, cpu_percent=-1.0),  # older than the range
           point("d", 2, tier, T0, cpu_percent=-2.0), point("h", 1, tier, T0, cpu_percent=-3.0))  # other objects

    answer = store.series("d", 1, range_name, ("cpu_percent", "memory_mib"), now=now)

    assert answer["step"] == step and answer["range"] == range_name
    assert set(answer["series"]) == {"cpu_percent", "memory_mib"}
    base = tier * 1000.0
    assert answer["series"]["cpu_percent"] == [[T0 - age, base + i, round(base + i + 0.456, 2)]
                                              for i, age in enumerate(ages)]
    assert answer["series"]["memory_mib"] == [[T0 - age, 123.46, 123.46] for age in ages]


def test_a_gap_is_read_back_as_null_not_left_out(db):
    insert(point("d", 1, 0, T0, cpu_percent=5.0), point("d", 1, 0, T0 + 10, cpu_percent=None),
           point("d", 1, 0, T0 + 20, cpu_percent=7.0))
    assert store.series("d", 1, "1h", ("cpu_percent",), now=T0 + 25)["series"]["cpu_percent"] == [
        [T0, 5.0, 5.0], [T0 + 10, None, None], [T0 + 20, 7.0, 7.0]]


# Storage ------------------------------------------------------------------------------------------

def test_a_domains_history_costs_about_a_megabyte(make_host, make_domain):
    """Steady state: what pruning leaves of dense history in every tier (checked on one domain), and
    what that many rows, every figure set (nulls are cheaper), add to the database (a second domain).
    Measured as the growth of the database's used pages (SQLite) or of the table with its indexes
    (PostgreSQL), so the two indexes count."""
    host = make_host()
    dense, measured = make_domain(host), make_domain(host)
    now = T0
    for tier in TIERS:  # every step filled, from a little beyond each tier's age
        insert(*(point("d", dense.pk, tier.level, now - s * tier.step, **every_figure(1.0))
                 for s in range(tier.keep // tier.step + 5)))
    store.prune(now)
    steady = {tier.level: tier.keep // tier.step + 1 for tier in TIERS}
    assert {tier.level: Point.objects.filter(obj=dense.pk, tier=tier.level).count() for tier in TIERS} == steady
    rows = sum(steady.values())
    assert rows == 361 + 1441 + 337 + 1465

    before = _database_bytes()
    insert(*(point("d", measured.pk, tier.level, now - s * tier.step, **every_figure(12345.678))
             for tier in TIERS for s in range(steady[tier.level])))
    grown = _database_bytes() - before

    print(f"\nstorage: {rows} rows per domain at steady state, {grown} bytes ({grown / rows:.0f} per row, "
          f"{connection.vendor})")
    assert 0 < grown <= 2 * 1024 * 1024


def _database_bytes() -> int:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA page_size")
            page_size = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA freelist_count")
            return (pages - cursor.fetchone()[0]) * page_size
        cursor.execute("SELECT pg_total_relation_size(%s)", [Point._meta.db_table])
        return int(cursor.fetchone()[0])
