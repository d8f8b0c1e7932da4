#!/usr/bin/env python3
"""What collecting usage figures costs, how fast they reach a page, and what they cost to keep and read.

    .venv/bin/python bench/metrics.py [--guests 20] [--passes 30] [--fill-domains 100] [--keep]
                                      [--database-url postgres://postgres@127.0.0.1:5432/webvirt_bench]

On a state of its own, as bench/clone.py and bench/snapshots.py do: a temporary WEBVIRT_STATE_DIR with
its own SQLite database (or --database-url, emptied before and after, named *bench*), its own Redis key
prefix, its own web server and event watcher, and a temporary directory pool on qemu:///system. All of
it (the guests, the pool, this run's Redis keys, the folder) is removed at the end, also on failure or
SIGTERM.

The phases, in one run:

(a) collector_qemu: --guests tiny guests (128 MiB, emulated, overlays on one base) run on qemu:///system.
    The collector's pass, as the watcher runs it (webvirt.events.watcher.HostWatch.collect), is
    `stats.read_host`, `stats.read_domains` (one getAllDomainStats, ACTIVE|NOWAIT) and `store.record`
    (rates, tier-0 rows, the list's columns) against the real database. They are called here, in this
    process, --passes times; `time.process_time()` counts this process's own CPU (all its threads: the
    libvirt client library's RPC, Python, the ORM, and SQLite's engine when the database is SQLite; a
    PostgreSQL server's CPU is not in it). libvirtd's CPU over the same passes is read from
    /proc/<pid>/stat. Share of a core = CPU per pass / interval, for the default 10 s (goal <= 2%) and
    the 2 s minimum. Each pass's `at` is a step later than the one before, so each writes new rows.
(f) virsh_domstats: `virsh domstats --list-active --state --cpu-total --balloon --vcpu --interface
    --block` for the same guests, timed (wall; virsh's own CPU from getrusage of children; libvirtd's
    from /proc): the reference cost of the libvirt call. Also the same call made in this process
    (`getAllDomainStats`), for comparison.
(b) collector_test_driver: 2,000 domains on 10 hosts of libvirt's test driver through the daemon
    (`test+unix:///<node file>`, as bench/list_scale.py makes them; ~60% running). A pass is one pass per
    host, as the watcher makes them (one per host, each on its own connection). The test driver answers
    only the state group (no counters, no balloon), so its domains give no figures and `record` writes
    host rows only; `record_full_figures` then times `record` for the same running domains with full
    readings made up here (every counter, memory, balloon), which is what 2,000 real guests would cost.
(c) latency: the real web server (uvicorn) and watcher (`manage.py watch`, WEBVIRT_METRICS_INTERVAL=2)
    run; a WebSocket client subscribes to the guests' figures (`{"type": "subscribe", "metrics": [...]}`,
    at most 20 per socket, so 19 guests and the host) and notes when each sample arrives. A pass
    starts on the step's boundary (it sleeps `interval - time % interval`) and its samples carry
    `t` = that boundary (the start of the step, floored), so `arrival - t` is the time from the pass's
    start to the client, plus the few ms the watcher's sleep overshoots the boundary: an upper bound.
    Reported per sample and per pass (the pass's last sample: a pass publishes its samples one after
    the other). The watcher's own CPU over the window (/proc) is reported too, per pass.
(d) query_24h: a day of tier-1 rows (one a minute) for one guest, and the full retention of every tier
    (tier 0 for an hour at 10 s, tier 1 a day, tier 2 a week, tier 3 a year) for it and --fill-domains
    others; then `GET /api/v1/domains/<id>/metrics/?range=24h` over one keep-alive connection with a
    token: median and p95 of --requests (goal <= 200 ms). The answer holds the API's 10 domain series,
    1,440 points each ([t, average, maximum]).
(e) storage: bytes per row from the database's growth over that fill (SQLite: page_count * page_size
    after a WAL checkpoint; PostgreSQL: pg_total_relation_size, table and indexes) divided by the rows
    added; then per domain: the rows a day writes at the 10 s default (8,640 tier-0, 1,440 tier-1, 48
    tier-2, 4 tier-3) and the rows a domain holds once every tier is full (360 + 1,440 + 336 + 1,464).

Progress goes to stderr; the last line of stdout is one JSON object. Run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import libvirt

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from common import Client, Server, Watcher, bench_env, fail, keep_or_remove, log, manage, percentile, prepare_database  # noqa: E402
from list_scale import write_nodes  # noqa: E402

from tests.guest.guest import ensure_image, make_overlay, tiny_domain_xml  # noqa: E402
from tests.guest.serial import SerialShell  # noqa: E402

URI = "qemu:///system"
DEFAULT_INTERVAL = 10  # the setting's default: the in-process passes bucket their rows on it
LIVE_INTERVAL = 2  # the live watcher's, in (c): more samples in less time
BOOT_TIMEOUT = 180.0  # 20 emulated guests booting at once on 2 cores
GOALS = {"collector_share_of_core_percent": 2.0, "latency_s": 2.0, "query_24h_ms": 200.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The rows a domain holds per tier once each is full (at the 10 s default), and a day's writes.
HELD_ROWS = {0: 3600 // DEFAULT_INTERVAL, 1: 1440, 2: 7 * 48, 3: 366 * 4}
WRITTEN_ROWS_PER_DAY = {0: 86400 // DEFAULT_INTERVAL, 1: 1440, 2: 48, 3: 4}
STEPS = {0: DEFAULT_INTERVAL, 1: 60, 2: 1800, 3: 21600}

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class BenchError(RuntimeError):
    pass


def stop_on_signal(signum: int, _frame) -> None:  # type: ignore[no-untyped-def]
    raise KeyboardInterrupt(f"signal {signum}")  # so that every `finally` cleans up


# Helpers -----------------------------------------------------------------------------------------

def libvirtd_pid() -> int | None:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() in ("libvirtd", "virtqemud"):
                    return int(proc.name)
            except OSError:
                continue
    return None


def proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def summary(values: list[float], digits: int = 2) -> dict:
    return {"median": round(statistics.median(values), digits), "mean": round(statistics.fmean(values), digits),
            "p95": round(percentile(values, 0.95), digits), "max": round(max(values), digits), "n": len(values)}


def cleanup(prefix: str, pool_name: str | None, redis_url: str | None, redis_prefix: str) -> None:
    """Force off and undefine every domain named `prefix…`, remove the pool's volumes and the pool, and
    this run's Redis keys. Each step is tried even if another failed."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        log(f"cleanup: libvirt does not answer: {exc}")
        conn = None
    if conn is not None:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(prefix):
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError as exc:
                log(f"cleanup: could not remove {dom.name()}: {exc}")
        if pool_name:
            try:
                pool = conn.storagePoolLookupByName(pool_name)
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()  # transient: gone with this
            except libvirt.libvirtError as exc:
                log(f"cleanup: pool {pool_name}: {exc}")
        conn.close()
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"*{redis_prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
        except Exception as exc:  # cleanup goes on
            log(f"cleanup: Redis keys {redis_prefix}*: {exc}")


# Guests ------------------------------------------------------------------------------------------

def boot_guests(conn: libvirt.virConnect, pool: libvirt.virStoragePool, folder: Path, prefix: str,
                count: int) -> list[str]:
    base = folder / f"{prefix}base.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(ensure_image()), str(base)], check=True)
    names = []
    for i in range(1, count + 1):
        name = f"{prefix}g{i:02d}"
        overlay = make_overlay(base, folder / f"{name}.qcow2")
        conn.defineXML(tiny_domain_xml(name, str(overlay), memory_mib=128, vnc=False))
        names.append(name)
    pool.refresh(0)
    started = time.monotonic()
    for name in names:
        conn.lookupByName(name).create()
    log(f"started {count} guests in {time.monotonic() - started:.1f} s; waiting for their shells…")
    for name in names:
        with SerialShell(conn.lookupByName(name)) as shell:
            shell.wait_for_shell(max(10.0, BOOT_TIMEOUT - (time.monotonic() - started)))
    log(f"all {count} guests answer on their serial shells, {time.monotonic() - started:.1f} s after the first start")
    return names


# (a) and (b): the collector's passes in this process --------------------------------------------------

def timed_passes(hosts: list[tuple], passes: int, readings=None) -> dict:  # type: ignore[no-untyped-def]
    """Run `passes` collector passes over `hosts` ([(Host, conn, Memory)]); CPU and wall per pass, split
    into reading the host, reading the domains and recording. `readings(host_index, pass_index, domains)`
    may replace the domains' readings (made-up full figures) before they are recorded."""
    from webvirt.metrics import store
    from webvirt.virt import stats

    daemon = libvirtd_pid()
    parts = {"read_host": [], "read_domains": [], "record": []}
    cpu, wall, domains_read, samples_made = [], [], [], []
    at0 = time.time() - (passes + 2) * DEFAULT_INTERVAL  # a step apart each, ending now: each pass its own rows
    daemon_before = proc_cpu(daemon)
    for p in range(passes):
        at = at0 + p * DEFAULT_INTERVAL
        pass_cpu, pass_wall = time.process_time(), time.perf_counter()
        n_domains = n_samples = 0
        for index, (host, conn, memory) in enumerate(hosts):
            c0 = time.process_time()
            host_now = stats.read_host(conn, at)
            c1 = time.process_time()
            domains_now = stats.read_domains(conn, at)
            c2 = time.process_time()
            if readings is not None:
                domains_now = readings(index, p, domains_now)
                c2 = time.process_time()  # making them up is not the collector's work
            made = store.record(host, memory, host_now, domains_now)
            c3 = time.process_time()
            parts["read_host"].append(c1 - c0)
            parts["read_domains"].append(c2 - c1)
            parts["record"].append(c3 - c2)
            n_domains += len(domains_now)
            n_samples += len(made)
        cpu.append(time.process_time() - pass_cpu)
        wall.append(time.perf_counter() - pass_wall)
        domains_read.append(n_domains)
        samples_made.append(n_samples)
        time.sleep(0.05)
    daemon_after = proc_cpu(daemon)
    per_pass = {k: ms(sum(v) / passes) for k, v in parts.items()}
    mean_cpu = statistics.fmean(cpu[1:] if passes > 2 else cpu)  # the first pass warms caches up
    out = {
        "passes": passes, "hosts": len(hosts), "domains_per_pass": max(domains_read),
        "samples_per_pass": max(samples_made),
        "cpu_ms_per_pass": summary([c * 1000 for c in cpu]),
        "cpu_ms_per_pass_parts_mean": per_pass,
        "wall_ms_per_pass": summary([w * 1000 for w in wall]),
        "share_of_core_percent_at_10s": round(mean_cpu / DEFAULT_INTERVAL * 100, 3),
        "share_of_core_percent_at_2s": round(mean_cpu / LIVE_INTERVAL * 100, 3),
    }
    if daemon_before is not None and daemon_after is not None:
        out["libvirtd_cpu_ms_per_pass"] = round((daemon_after - daemon_before) / passes * 1000, 2)
    return out


def full_readings(domains_now: list, at: float, p: int) -> list:  # type: ignore[no-untyped-def]
    """The running domains' readings as a real guest's would be: every counter, memory and balloon."""
    from webvirt.virt.stats import DomainReading

    made = []
    for r in domains_now:
        seed = int(r.uuid[:8], 16)
        grow = p + 1
        made.append(DomainReading(
            uuid=r.uuid, at=at, vcpus=1 + seed % 4, memory_kib=524288 + seed % 65536, balloon_kib=524288,
            counters={"cpu_ns": grow * (seed % 5_000_000_000), "rd_bytes": grow * (seed % 9_000_000),
                      "wr_bytes": grow * (seed % 7_000_000), "rd_reqs": grow * (seed % 900),
                      "wr_reqs": grow * (seed % 700), "rx_bytes": grow * (seed % 3_000_000),
                      "tx_bytes": grow * (seed % 2_000_000)}))
    return made


def virsh_domstats(names: list[str], runs: int) -> dict:
    """`virsh domstats` with the collector's groups, for the running guests (all active domains)."""
    daemon = libvirtd_pid()
    wall, cpu, daemon_cpu = [], [], []
    args = ["virsh", "-c", URI, "domstats", "--list-active", "--state", "--cpu-total", "--balloon", "--vcpu",
            "--interface", "--block"]
    listed = 0
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        d0 = proc_cpu(daemon)
        t0 = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True)
        wall.append(time.perf_counter() - t0)
        d1 = proc_cpu(daemon)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise BenchError(f"virsh domstats failed: {result.stderr.strip()}")
        listed = result.stdout.count("Domain: ")
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if d0 is not None and d1 is not None:
            daemon_cpu.append(d1 - d0)
        time.sleep(0.2)
    missing = [n for n in names if f"Domain: '{n}'" not in result.stdout]
    if missing:
        raise BenchError(f"virsh domstats did not list {missing}")
    out = {"runs": runs, "domains_listed": listed, "wall_ms": summary([w * 1000 for w in wall]),
           "virsh_cpu_ms": summary([c * 1000 for c in cpu])}
    if daemon_cpu:
        out["libvirtd_cpu_ms"] = summary([c * 1000 for c in daemon_cpu])
    return out


def inprocess_domstats(conn: libvirt.virConnect, runs: int) -> dict:
    from webvirt.virt import stats

    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        conn.getAllDomainStats(stats.GROUPS, stats.FLAGS)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        time.sleep(0.05)
    return {"runs": runs, "wall_ms": summary([w * 1000 for w in wall]), "cpu_ms": summary([c * 1000 for c in cpu])}


# (c): from collection to a WebSocket client ---------------------------------------------------------

async def receive_samples(port: int, token: str, wanted: list[str], seconds: float) -> list[tuple[dict, float]]:
    from websockets.asyncio.client import connect

    got: list[tuple[dict, float]] = []
    async with connect(f"ws://127.0.0.1:{port}/ws/events/", additional_headers={"Authorization": f"Token {token}"},
                       open_timeout=30) as ws:
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise BenchError(f"the socket did not greet: {hello}")
        await ws.send(json.dumps({"type": "subscribe", "metrics": wanted}))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            at = time.time()
            event = json.loads(message)
            if event.get("type") == "metrics":
                got.append((event, at))
    return got


def latency_phase(env: dict[str, str], tmp: Path, token: str, host_id: int, domain_ids: list[int],
                  seconds: float, servers: list[Server]) -> tuple[dict, Server]:
    live_env = {**env, "WEBVIRT_METRICS_INTERVAL": str(LIVE_INTERVAL)}
    server = Server(live_env, tmp / "web.log")
    servers.append(server)  # stopped by main(), whatever happens
    server.start()
    watcher = Watcher(live_env, tmp / "watcher.log", holder=f"bench-metrics-{os.getpid()}")
    try:
        watcher.start()
        watcher.wait_for_log("resynchronised", timeout=90)
        time.sleep(2 * LIVE_INTERVAL)  # its first passes (the first has no rates yet)
        wanted = [f"d:{pk}" for pk in domain_ids[:19]] + [f"h:{host_id}"]
        cpu0 = proc_cpu(watcher.proc.pid if watcher.proc else None)
        got = asyncio.run(receive_samples(server.port, token, wanted, seconds))
        cpu1 = proc_cpu(watcher.proc.pid if watcher.proc else None)
    finally:
        code, _ = watcher.stop()
        log(f"the watcher stopped (exit code {code})")
    if not got:
        raise BenchError(f"no sample arrived in {seconds:g} s; the watcher's log:\n{watcher.tail()}")
    per_sample = [at - event["t"] for event, at in got]
    passes: dict[int, float] = {}
    for event, at in got:
        passes[event["t"]] = max(passes.get(event["t"], 0.0), at - event["t"])
    kinds = {f"{e['kind']}:{e['id']}" for e, _ in got}
    out = {
        "interval_s": LIVE_INTERVAL, "window_s": seconds, "subscribed": len(wanted), "objects_seen": len(kinds),
        "samples_received": len(got), "passes_seen": len(passes),
        "per_sample_s": summary(per_sample, 3), "per_pass_last_sample_s": summary(list(passes.values()), 3),
        "first_sample_of_pass_s": summary([min(at - e["t"] for e, at in got if e["t"] == t) for t in passes], 3),
    }
    if cpu0 is not None and cpu1 is not None and passes:
        out["watcher_process_cpu_ms_per_pass"] = round((cpu1 - cpu0) / (seconds / LIVE_INTERVAL) * 1000, 2)
    return out, server


# (d) and (e): a day of rows, the 24 h query, and what rows cost -----------------------------------------

def database_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            return int(pages * cursor.fetchone()[0])
        cursor.execute("SELECT pg_total_relation_size('metrics_point')")
        return int(cursor.fetchone()[0])


def fill(target: int, others: int) -> tuple[int, int]:
    """Every tier's full retention for domain `target` and `others` more (ids no domain has), ending now;
    returns the rows added and the database's growth in bytes."""
    from django.db import connection, transaction

    from webvirt.metrics.models import SERIES, Point

    table = Point._meta.db_table
    columns = ["kind", "obj", "tier", "t", "n", *[c for s in SERIES for c in (s, f"{s}_max")]]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    rng = random.Random(7)
    before = database_bytes()
    added = 0
    ids = [10_000_000 + i for i in range(others)] + [target]  # the target last: its day ends when the query starts
    for number, obj in enumerate(ids):
        now = int(time.time())
        rows = []
        for tier, held in HELD_ROWS.items():
            step = STEPS[tier]
            last = now - now % step
            for k in range(held):
                values = []
                for _ in SERIES:
                    avg = rng.random() * 100
                    values += [avg, avg * 1.2]
                rows.append(["d", obj, tier, last - k * step, max(1, step // DEFAULT_INTERVAL), *values])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        added += len(rows)
        if number % 20 == 0 or number == len(ids) - 1:
            log(f"filled {number + 1} of {len(ids)} domains ({added} rows)")
    return added, database_bytes() - before


def query_phase(port: int, token: str, target: int, requests: int, warmup: int) -> dict:
    from webvirt.metrics import store
    from webvirt.virt.stats import DOMAIN_SERIES

    api = Client(port, token)
    path = f"/api/v1/domains/{target}/metrics/?range=24h"
    times, size, points = [], 0, {}
    for i in range(warmup + requests):
        t0 = time.perf_counter()
        status, _msg, body = api.request("GET", path)
        elapsed = time.perf_counter() - t0
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {body[:300]!r}")
        if i >= warmup:
            times.append(elapsed * 1000)
        size = len(body)
        points = {name: len(series) for name, series in json.loads(body)["series"].items()}
    api.close()
    if min(points.values()) < 1430:  # a day of 1-minute rows, give or take the minute the query starts in
        raise BenchError(f"the 24 h answer is short: {points}")
    inprocess = []
    for _ in range(requests):
        t0 = time.perf_counter()
        store.series("d", target, "24h", DOMAIN_SERIES)
        inprocess.append((time.perf_counter() - t0) * 1000)
    return {"path": "/api/v1/domains/<id>/metrics/?range=24h", "requests": requests, "series": len(points),
            "points_per_series": max(points.values()), "answer_bytes": size,
            "http_ms": summary(times, 1), "store_series_in_process_ms": summary(inprocess, 1)}


# The run -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=20)
    parser.add_argument("--passes", type=int, default=30, help="collector passes timed over the guests")
    parser.add_argument("--test-hosts", type=int, default=10)
    parser.add_argument("--test-per-host", type=int, default=200)
    parser.add_argument("--test-passes", type=int, default=10)
    parser.add_argument("--virsh-runs", type=int, default=10)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--fill-domains", type=int, default=100, help="other domains with full retention in (d)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", help="use this database (it is flushed) instead of a temporary SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    if not shutil.which("virsh"):
        parser.error("virsh is missing")
    if args.database_url and "bench" not in urlsplit(args.database_url).path:
        parser.error("the --database-url database is emptied: its name must contain 'bench'")

    signal.signal(signal.SIGTERM, stop_on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-metrics-"))
    os.chmod(tmp, 0o755)  # qemu (user libvirt-qemu) must reach the pool inside it
    env = bench_env(tmp / "state", args.database_url)
    env["WEBVIRT_METRICS_INTERVAL"] = str(DEFAULT_INTERVAL)
    tag = uuid.uuid4().hex[:6]
    prefix, pool_name = f"wvmet{tag}-", f"webvirt-bench-metrics-{tag}"
    made_pool = False
    servers: list[Server] = []
    result: dict | None = None
    try:
        conn = libvirt.open(URI)
        (tmp / "pool").mkdir(mode=0o755)
        pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>{pool_name}</name><target>"
                                         f"<path>{tmp / 'pool'}</path></target></pool>", 0)
        made_pool = True
        result = run(args, tmp, env, conn, pool, prefix, servers)
    except (BenchError, SystemExit, KeyboardInterrupt, Exception) as exc:  # reported, then cleaned up
        log(f"failed: {type(exc).__name__}: {exc}")
        for path in sorted(tmp.glob("*.log")):
            log(f"{path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
    finally:
        for server in servers:
            server.stop()
        cleanup(prefix, pool_name if made_pool else None, env.get("REDIS_URL"), env["WEBVIRT_REDIS_PREFIX"])
        if args.database_url and not args.keep:
            try:
                manage(env, "flush", "--noinput")
            except SystemExit as exc:
                log(f"cleanup: flushing the database: {exc}")
        keep_or_remove(tmp, args.keep)
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, tmp: Path, env: dict[str, str], conn: libvirt.virConnect,  # type: ignore[no-untyped-def]
        pool: libvirt.virStoragePool, prefix: str, servers: list) -> dict:
    log(f"preparing the database ({'PostgreSQL' if args.database_url else 'SQLite'} in {tmp})")
    token = prepare_database(env, flush=bool(args.database_url))
    # This process runs the collector's functions itself, on the same database as the processes.
    for key in ("DATABASE_URL",):
        os.environ.pop(key, None)
    os.environ.update(env)
    import django

    django.setup()
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host
    from webvirt.hosts.models import Host
    from webvirt.metrics import store
    from webvirt.metrics.models import Point

    out: dict = {"database": "postgresql" if args.database_url else "sqlite", "cores": os.cpu_count(),
                 "load_before": round(os.getloadavg()[0], 2), "libvirt": conn.getLibVersion(),
                 "qemu": conn.getVersion()}
    names = boot_guests(conn, pool, tmp / "pool", prefix, args.guests)
    host = Host.objects.create(name="local qemu", uri=URI, status=Host.ONLINE)
    if sync_host(host) is None:
        raise BenchError("qemu:///system did not answer the first sync")
    ours = list(Domain.objects.filter(host=host, name__in=names).order_by("name").values_list("pk", flat=True))
    others = conn.numOfDomains() - len(names)
    out["guests"] = len(names)
    out["other_running_domains_on_host"] = others
    time.sleep(5)  # the guests settle after their boot

    # (a) the collector's passes over the guests; (f) virsh's and the library's call for comparison.
    log(f"(a) {args.passes} collector passes over {len(names)} guests (+{others} other running domains)…")
    out["a_collector_qemu"] = timed_passes([(host, conn, store.Memory())], args.passes)
    log(f"(a) {json.dumps(out['a_collector_qemu'])}")
    log(f"(f) virsh domstats, {args.virsh_runs} runs…")
    out["f_virsh_domstats"] = virsh_domstats(names, args.virsh_runs)
    out["f_getAllDomainStats_in_process"] = inprocess_domstats(conn, args.virsh_runs)
    log(f"(f) {json.dumps(out['f_virsh_domstats'])}; in process {json.dumps(out['f_getAllDomainStats_in_process'])}")

    # (b) 2,000 domains on 10 test-driver hosts through the daemon.
    (tmp / "nodes").mkdir()
    nodes, expected = write_nodes(tmp / "nodes", args.test_hosts, args.test_per_host)
    test_hosts = []
    for h, node in enumerate(nodes, start=1):
        row = Host.objects.create(name=f"bench-h{h:02d}", uri=f"test+unix://{node}", status=Host.ONLINE)
        test_conn = libvirt.open(row.uri)
        if sync_host(row) is None:
            raise BenchError(f"{row.uri} did not answer")
        test_hosts.append((row, test_conn, store.Memory()))
    running = sum(1 for d in expected if d["state"] == "running")
    log(f"(b) {args.test_passes} passes over {len(expected)} test-driver domains on {len(nodes)} hosts "
        f"({running} running)…")
    real = timed_passes(test_hosts, args.test_passes)
    full = timed_passes(test_hosts, args.test_passes,
                        readings=lambda i, p, domains: full_readings(domains, time.time(), p))
    out["b_collector_test_driver"] = {"domains": len(expected), "running": running, "as_read": real,
                                      "record_full_figures": full}
    log(f"(b) {json.dumps(out['b_collector_test_driver'])}")
    for row, test_conn, _memory in test_hosts:
        test_conn.close()
        row.delete()  # and its domains' rows: the watcher in (c) holds the qemu host only
    Point.objects.all().delete()

    # (c) collection to a WebSocket client, with the real web server and watcher.
    log(f"(c) the watcher collects every {LIVE_INTERVAL} s; a client listens for {args.latency_seconds:g} s…")
    out["c_latency"], server = latency_phase(env, tmp, token, host.pk, ours, args.latency_seconds, servers)
    log(f"(c) {json.dumps(out['c_latency'])}")

    # (d) a day of 1-minute rows (and every tier full for it and others), then the 24 h query.
    Point.objects.all().delete()
    log(f"(d) filling every tier's retention for 1 + {args.fill_domains} domains…")
    started = time.monotonic()
    rows, grown = fill(ours[0], args.fill_domains)
    fill_seconds = round(time.monotonic() - started, 1)
    out["d_query_24h"] = query_phase(server.port, token, ours[0], args.requests, 3)
    out["d_query_24h"]["table_rows"] = Point.objects.count()
    out["d_query_24h"]["fill_seconds"] = fill_seconds
    log(f"(d) {json.dumps(out['d_query_24h'])}")

    # (e) what a row, a domain's day and a domain's whole history take.
    per_row = grown / rows
    written = sum(WRITTEN_ROWS_PER_DAY.values())
    held = sum(HELD_ROWS.values())
    out["e_storage"] = {
        "method": ("database growth over the fill (" + ("SQLite page_count*page_size after a WAL checkpoint"
                   if not args.database_url else "pg_total_relation_size of metrics_point")
                   + ", table and its indexes) / rows added"),
        "rows_added": rows, "bytes_grown": grown, "bytes_per_row": round(per_row, 1),
        "rows_written_per_domain_per_day": written,
        "bytes_written_per_domain_per_day": round(written * per_row),
        "rows_held_per_domain_per_day_of_history": {"tier1_1min": 1440, "tier2_30min": 48, "tier3_6h": 4},
        "rows_held_per_domain_steady": held,
        "bytes_held_per_domain_steady": round(held * per_row),
        "note": ("at the 10 s default; tier 0 is kept an hour, tier 1 a day, tier 2 a week, tier 3 a year, so a "
                 "domain's rows stop growing after a year at the 'held' figure"),
    }
    log(f"(e) {json.dumps(out['e_storage'])}")

    a, b, c, d = (out["a_collector_qemu"], out["b_collector_test_driver"], out["c_latency"], out["d_query_24h"])
    out["goals"] = {
        "collector_20_guests_share_at_10s_le_2pct": a["share_of_core_percent_at_10s"]
        <= GOALS["collector_share_of_core_percent"],
        "collector_2000_domains_share_at_10s_le_2pct": b["record_full_figures"]["share_of_core_percent_at_10s"]
        <= GOALS["collector_share_of_core_percent"],
        "latency_p95_le_2s": c["per_pass_last_sample_s"]["p95"] <= GOALS["latency_s"],
        "query_24h_median_le_200ms": d["http_ms"]["median"] <= GOALS["query_24h_ms"],
    }
    out["load_after"] = round(os.getloadavg()[0], 2)
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        fail("interrupted")
