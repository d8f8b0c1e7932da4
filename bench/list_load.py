#!/usr/bin/env python3
"""How many domain-list requests one web process serves: 1, 10 and 50 concurrent clients on 2,000 domains,
then the search again on 10,000, on SQLite and on PostgreSQL.

    .venv/bin/python bench/list_load.py [--database-url postgres://postgres@127.0.0.1:5432/webvirt_bench_list]
                                        [--profile FOLDER] [--paths api_search,html_page] [--clients 1,10,50]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR and Redis key prefix), for SQLite (a file
in that folder) and, when --database-url is given, for that PostgreSQL database too (emptied before and
after, so its name must contain "bench"):

1. writes 10 libvirt test-driver node files of 200 domains each (bench/common.py's write_nodes: names
   `bench-hNN-<role>-NNNN`, fixed UUIDs), migrates, creates an administrator and an API token, and
   registers the hosts with one `manage.py addhosts` (each tested, its domains loaded into the cache);
2. starts one web process as the Procfile does (uvicorn, one process; no watcher or worker, which would
   take the same 2 cores) and checks the cache through the API;
3. for each request of --paths -- the API search (`/api/v1/domains/?search=h03-web-00`, 20 matches), the
   API's unfiltered first page, the same two computed and the page while data changes (both below), and
   the search and page on the HTML list (`/domains/`, signed in through the login form) -- and for 1, 10
   and 50 concurrent clients (threads, each its own keep-alive connection;
   the HTML clients share one session): every client sends 2 untimed requests and then its share of
   --requests timed ones, all at once. Reported per level: median and p95 of the timed requests,
   requests/s (every request of the level over its wall-clock time), and the web process's CPU time
   per request (user + system from /proc, over the level, divided by its requests);
4. registers 40 more hosts (10,000 domains in all) and measures the searches again (the same 20
   matches, since host 3 is the same) at 1 and 50 clients.

The web process keeps answers until their data changes (webvirt.changes), so the requests above, each the
same as the one before, are mostly answered from what it kept, as a dashboard's or a script's repeated
requests are. `api_search_computed` and `api_page_computed` are the same two requests with a parameter of
their own each time (`nocache=N`, ignored by the list), so every answer is computed: what a request costs
when the web process has never seen it. The 10,000-domain goal compares the computed searches when they
are measured (a kept answer costs the same at any size).

`api_page_changing` is the API page again while the bench changes one domain row --change-rate times a second
(10) straight in the database, as the watcher and the collector do: what keeping answers is worth when
the data does change.

Goals (issue 19), for the API: at least 200 requests/s; with 50 clients a median under 250 ms and a p95
under 500 ms; the search over 10,000 domains within 20% of the one over 2,000 (its 1-client median).

--profile FOLDER runs the web process under cProfile in every thread (bench/profiled_web.py) and writes
`profile-<database>.txt` there (the top functions by own time and by cumulative time) and the pstats
file; its latencies are inflated by the profiler and are not the bench's figures.

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    PYTHON,
    ROOT,
    UVICORN,
    BenchError,
    Client,
    Processes,
    add_hosts,
    bench_env,
    concurrent_gets,
    ensure_database,
    free_port,
    keep_or_remove,
    log,
    manage,
    median,
    percentile,
    prepare_database,
    wait_for_web,
    write_nodes,
)

GOALS = {"requests_per_s": 200.0, "median_ms_50_clients": 250.0, "p95_ms_50_clients": 500.0,
         "search_10k_over_2k": 1.2}
PATHS = ("api_search", "api_page", "api_search_computed", "api_page_computed", "api_page_changing", "html_search",
         "html_page")
WARMUP = 2  # untimed requests per client before its timed ones
TICKS = os.sysconf("SC_CLK_TCK")


# The web process -----------------------------------------------------------------------------------

def start_web(procs: Processes, port: int, profile: Path | None) -> None:
    if profile is None:
        args = [str(UVICORN), "webvirt.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                "--ws", "websockets", "--ws-per-message-deflate", "false", "--no-proxy-headers",
                "--log-level", "warning"]
    else:
        args = [str(PYTHON), str(ROOT / "bench" / "profiled_web.py"), str(profile), "--port", str(port)]
    procs.start("web", args)
    wait_for_web(port, procs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime and stime, the 14th and 15th fields


# One level: N clients at once -------------------------------------------------------------------------

class Target:
    """A request to measure: its path, who sends it, and what every answer must contain. A `_computed`
    target's requests each carry a parameter of their own (`nocache=N`, which the list ignores), so the
    web process computes every answer instead of giving one it kept (webvirt.changes)."""

    def __init__(self, name: str, path: str, must_contain: bytes) -> None:
        self.name, self.must_contain = name, must_contain
        self.path: str | Callable[[], str] = path
        if name.endswith("_computed"):
            numbers = itertools.count()
            self.path = lambda: f"{path}{'&' if '?' in path else '?'}nocache={next(numbers)}"

    def check(self, body: bytes) -> None:
        if self.must_contain not in body:
            raise BenchError(f"{self.name}: the answer lacks {self.must_contain!r}: {body[:300]!r}")


class Writer:
    """Changes one domain row `rate` times a second, straight in the database, as the watcher and the
    collector do: each change makes the web process's kept answers stale (webvirt.changes)."""

    def __init__(self, database_url: str | None, sqlite_path: Path, rate: float) -> None:
        self.database_url, self.sqlite_path, self.rate = database_url, sqlite_path, rate
        self.stop, self.count = threading.Event(), 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self):  # type: ignore[no-untyped-def]
        if self.database_url:
            import psycopg

            return psycopg.connect(self.database_url, autocommit=True)
        return sqlite3.connect(self.sqlite_path, timeout=20, isolation_level=None)

    def run(self) -> None:
        conn = self.connect()
        try:
            mark = "%s" if self.database_url else "?"
            while not self.stop.wait(1 / self.rate):
                conn.execute(f"UPDATE domains_domain SET cpu_percent = {mark} "
                             "WHERE id = (SELECT min(id) FROM domains_domain)", (self.count % 100,))
                self.count += 1
        finally:
            conn.close()

    def __enter__(self) -> Writer:
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.per_s = round(self.count / (time.perf_counter() - self.started), 1)


class Load:
    """Makes clients for the API (a token) and the HTML list (one signed-in session) and measures levels."""

    def __init__(self, port: int, token: str, web_pid: int, writer: Callable[[], Writer]) -> None:
        self.port, self.token, self.web_pid, self.writer = port, token, web_pid, writer
        browser = Client(port)
        browser.login(ADMIN_USER, ADMIN_PASSWORD)
        self.cookies = dict(browser.cookies)
        browser.close()

    def clients(self, html: bool, count: int) -> list[Client]:
        made = [Client(self.port, None if html else self.token) for _ in range(count)]
        for client in made:
            client.cookies = dict(self.cookies) if html else {}
        return made

    def warm(self, target: Target, requests: int = 5) -> None:
        """A few untimed requests first: the process's first ones import and compile what they use."""
        client = self.clients(target.name.startswith("html"), 1)[0]
        try:
            concurrent_gets([client], target.path, 0, requests, target.check)
        finally:
            client.close()

    def level(self, target: Target, clients: int, total: int) -> dict:
        each = max(1, round(total / clients))
        group = self.clients(target.name.startswith("html"), clients)
        changing = self.writer() if target.name.endswith("changing") else contextlib.nullcontext()
        try:
            with changing:
                cpu, own, started = cpu_seconds(self.web_pid), os.times(), time.perf_counter()
                times = concurrent_gets(group, target.path, each, WARMUP, target.check)
                wall = time.perf_counter() - started
                cpu, own_after = cpu_seconds(self.web_pid) - cpu, os.times()
        finally:
            for client in group:
                client.close()
        sent = clients * (each + WARMUP)
        out = {"clients": clients, "median_ms": round(median(times), 1), "p95_ms": round(percentile(times, 0.95), 1),
               "requests_per_s": round(sent / wall, 1), "cpu_ms_per_request": round(cpu * 1000 / sent, 2),
               "client_cpu_ms_per_request": round((own_after.user + own_after.system - own.user - own.system)
                                                  * 1000 / sent, 2),
               "timed_requests": len(times)}
        if isinstance(changing, Writer):
            out["changes_per_s"] = changing.per_s
        log(f"  {target.name}, {clients} client(s): median {out['median_ms']} ms, p95 {out['p95_ms']} ms, "
            f"{out['requests_per_s']} requests/s, {out['cpu_ms_per_request']} ms CPU per request"
            + (f", {out['changes_per_s']} changes/s" if "changes_per_s" in out else ""))
        return out


# The run --------------------------------------------------------------------------------------------

def targets(search: str, matches: int, total: int, first_match: str, first_name: str) -> dict[str, Target]:
    query = urlencode({"search": search})
    return {"api_search": Target("api_search", f"/api/v1/domains/?{query}", f'"count":{matches},'.encode()),
            "api_page": Target("api_page", "/api/v1/domains/", f'"count":{total},'.encode()),
            "api_search_computed": Target("api_search_computed", f"/api/v1/domains/?{query}",
                                          f'"count":{matches},'.encode()),
            "api_page_computed": Target("api_page_computed", "/api/v1/domains/", f'"count":{total},'.encode()),
            "api_page_changing": Target("api_page_changing", "/api/v1/domains/", f'"count":{total},'.encode()),
            "html_search": Target("html_search", f"/domains/?{query}", first_match.encode()),
            "html_page": Target("html_page", "/domains/", first_name.encode())}


def register(env: dict[str, str], tmp: Path, hosts: int, per_host: int, first: int) -> tuple[list[dict], float]:
    folder = tmp / "nodes"
    folder.mkdir(exist_ok=True)
    nodes, expected = write_nodes(folder, hosts, per_host, first)
    rows = [(f"bench-h{first + i:03d}", f"test+unix://{node}") for i, node in enumerate(nodes)]
    seconds = add_hosts(env, tmp / f"hosts-{first}.csv", rows)
    log(f"registered {hosts} hosts with {len(expected)} domains in {seconds} s")
    return expected, seconds


def expect(expected: list[dict], search: str) -> tuple[int, str, str]:
    """How many domains `search` finds, the first of them and the first of all (by name, the list's order)."""
    found = sorted(d["name"] for d in expected if search.lower() in d["name"].lower())
    if not found:
        raise BenchError(f"the search '{search}' matches no domain")
    return len(found), found[0], min(d["name"] for d in expected)


def run_database(args: argparse.Namespace, tmp: Path, database_url: str | None) -> dict:
    database = "postgresql" if database_url else "sqlite"
    tmp.mkdir(parents=True)
    env = bench_env(tmp / "state", database_url)
    log(f"{database}: migrating a fresh database")
    token = prepare_database(env, flush=bool(database_url))
    procs = Processes(env, tmp)
    profile = args.profile / f"profile-{database}.pstats" if args.profile else None
    try:
        expected, register_seconds = register(env, tmp, args.hosts, args.per_host, 1)
        port = free_port()
        start_web(procs, port, profile)
        load = Load(port, token, procs.procs["web"].pid,
                    lambda: Writer(database_url, tmp / "state" / "db.sqlite3", args.change_rate))
        matches, first_match, first_name = expect(expected, args.search)
        chosen = targets(args.search, matches, len(expected), first_match, first_name)
        out: dict = {"database": database, "domains": len(expected), "hosts": args.hosts,
                     "register_seconds": register_seconds, "search": args.search, "search_matches": matches}
        for name in args.paths:
            load.warm(chosen[name])
            out[name] = [load.level(chosen[name], n, args.requests) for n in args.clients]
        extra_hosts = max(0, args.large_domains - len(expected)) // args.per_host
        if extra_hosts:
            more, _seconds = register(env, tmp, extra_hosts, args.per_host, args.hosts + 1)
            expected += more
            matches_large, first_match, first_name = expect(expected, args.search)
            large = targets(args.search, matches_large, len(expected), first_match, first_name)
            out["large"] = {"domains": len(expected), "search_matches": matches_large}
            for name in (n for n in args.paths if "search" in n):
                out["large"][name] = [load.level(large[name], n, args.requests) for n in (1, max(args.clients))]
    except BenchError:
        procs.log_tails()
        raise
    finally:
        if profile is not None:
            stop_profiled(procs)
        procs.stop()
        if database_url and not args.keep:
            with contextlib.suppress(SystemExit):
                manage(env, "flush", "--noinput")
    if profile is not None:
        out["profile"] = write_profile(profile, args.profile / f"profile-{database}.txt")
    return out


def stop_profiled(procs: Processes, timeout: float = 600) -> None:
    """SIGTERM to the profiled web process, and time to merge its threads' profiles (a minute or more)."""
    proc = procs.procs["web"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def write_profile(pstats_path: Path, text_path: Path, lines: int = 30) -> str:
    """The profile's top functions, by own time and by cumulative time, into `text_path`."""
    if not pstats_path.exists():
        raise BenchError(f"the profiled web process wrote no {pstats_path}")
    text = io.StringIO()
    stats = pstats.Stats(str(pstats_path), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    text_path.write_text(text.getvalue())
    log(f"profile written to {text_path}")
    return str(text_path)


def goals(result: dict) -> dict:
    """Which of issue 19's goals each database met (the API's figures)."""
    met = {}
    for database, out in result["databases"].items():
        api = [lvl for name in ("api_search", "api_page") for lvl in out.get(name, [])]
        busiest = [lvl for lvl in api if lvl["clients"] == max(lvl["clients"] for lvl in api)]
        checks = {"requests_per_s": all(lvl["requests_per_s"] >= GOALS["requests_per_s"] for lvl in busiest),
                  "median_50_clients": all(lvl["median_ms"] < GOALS["median_ms_50_clients"] for lvl in busiest),
                  "p95_50_clients": all(lvl["p95_ms"] < GOALS["p95_ms_50_clients"] for lvl in busiest)}
        # The search's own cost (computed), where it was measured: a kept answer costs the same at any size.
        search = "api_search_computed" if "api_search_computed" in out.get("large", {}) else "api_search"
        if "large" in out and search in out["large"]:
            ratio = out["large"][search][0]["median_ms"] / out[search][0]["median_ms"]
            out["search_large_over_small"] = round(ratio, 2)
            checks["search_10k_within_20_percent"] = ratio <= GOALS["search_10k_over_2k"]
        met[database] = checks
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="also measure this PostgreSQL database (it is emptied)")
    parser.add_argument("--force", action="store_true", help="allow a --database-url whose name lacks 'bench'")
    parser.add_argument("--no-sqlite", action="store_true", help="measure only the --database-url database")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--per-host", type=int, default=200)
    parser.add_argument("--large-domains", type=int, default=10_000,
                        help="domains for the large search, added in hosts of --per-host (0: skip it)")
    parser.add_argument("--search", default="h03-web-00", help="search text (the default matches 20 domains)")
    parser.add_argument("--change-rate", type=float, default=10.0,
                        help="api_page_changing: domain rows changed per second while it is measured")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per level, split over its clients")
    parser.add_argument("--clients", default="1,10,50", help="concurrent clients per level, comma-separated")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"what to measure, of {', '.join(PATHS)}")
    parser.add_argument("--profile", type=Path, help="profile the web process; write the profiles into this folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (and the database's data)")
    args = parser.parse_args()
    args.clients = [int(n) for n in args.clients.split(",")]
    args.paths = [p for p in args.paths.split(",") if p]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    if args.database_url:
        name = urlsplit(args.database_url).path.lstrip("/")
        if "bench" not in name and not args.force:
            parser.error(f"the database '{name}' is emptied by this benchmark; use one named *bench* or --force")
        ensure_database(args.database_url)
    elif args.no_sqlite:
        parser.error("--no-sqlite needs a --database-url")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()

    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-load-"))
    urls = ([] if args.no_sqlite else [None]) + ([args.database_url] if args.database_url else [])
    result: dict = {"databases": {}, "profiled": bool(args.profile), "goals": GOALS}
    try:
        for url in urls:
            out = run_database(args, tmp / ("postgresql" if url else "sqlite"), url)
            result["databases"][out["database"]] = out
    except BenchError as exc:
        log(str(exc))
        return 1
    finally:
        keep_or_remove(tmp, args.keep)
    result["goals_met"] = goals(result)
    result["goal_met"] = all(all(checks.values()) for checks in result["goals_met"].values())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
