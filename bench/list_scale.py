#!/usr/bin/env python3
"""How fast the domain list answers with 2,000 domains on 10 hosts, and while one host is frozen.

    .venv/bin/python bench/list_scale.py [--database-url postgres://postgres@127.0.0.1:5432/webvirt_bench]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR; SQLite in it unless
--database-url is given), so the developer's own data is never touched:

1. writes 10 libvirt test-driver node files of 200 domains each (fixed UUIDs, a mix of running,
   shut-off and paused domains, varied vCPUs and memory);
2. runs `manage.py migrate`, creates an administrator and an API token (`manage.py apitoken`);
3. starts the ASGI server as production does (uvicorn, see the Procfile) on a free port;
4. registers the 10 hosts through `POST /api/v1/hosts/` (`test+unix:///<abs>/nodeNN.xml`: the test
   driver through libvirtd), which tests each connection and loads its domains into the state cache;
5. measures, over one keep-alive HTTP connection, `GET /api/v1/domains/?search=...` (a search that
   matches a few hundred domains), the unfiltered first page, and the HTML list `/domains/?search=...`
   (logged in through the login form), while an event watcher (`manage.py watch`, with a Redis
   prefix of its own) holds a connection to every host;
6. with --offline-host (the default): points one host at a TCP listener on 127.0.0.1 that accepts and
   never answers (the URI is changed in the database and the server restarted, so it holds no
   connection opened under the old URI; the watcher sees the row change and reconnects to the
   listener), then measures the same search again: from the freeze until the watcher has flagged
   the host offline (`offline_host_flagged_seconds`, goal <= 10 s), and then while another client
   has the frozen host's page open (that request waits for libvirt's timeout);
7. stops the watcher with SIGTERM and reports how long it took and its exit code.

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
A --database-url database is emptied (`manage.py flush`) before and after the run, so its name
must contain "bench" unless --force is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    ROLES,
    RUNSTATES,
    Client,
    Server,
    Watcher,
    bench_env,
    fail,
    keep_or_remove,
    log,
    manage,
    percentile,
    prepare_database,
    write_nodes,
)

GOAL_MEDIAN_MS = 150.0
GOAL_OFFLINE_FLAGGED_SECONDS = 10.0


# A frozen host ------------------------------------------------------------------------------------

class FrozenListener:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word: a frozen host."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


# Measuring ---------------------------------------------------------------------------------------

def timed(client: Client, path: str, requests: int, warmup: int, check=None) -> list[float]:  # type: ignore[no-untyped-def]
    """Milliseconds per GET (response fully read), after `warmup` untimed requests."""
    times = []
    for n in range(warmup + requests):
        started = time.perf_counter()
        status, _msg, data = client.request("GET", path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            fail(f"GET {path} answered {status}: {data[:300]!r}")
        if check is not None:
            check(data)
        if n >= warmup:
            times.append(elapsed)
    return times


def summary(values: list[float]) -> tuple[float, float]:
    return round(statistics.median(values), 1), round(percentile(values, 0.95), 1)


def report(label: str, values: list[float]) -> None:
    median, high = summary(values)
    log(f"{label}: median {median} ms, p95 {high} ms")


# The run -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="use this database (it is flushed) instead of a temporary SQLite")
    parser.add_argument("--force", action="store_true", help="allow a --database-url whose name lacks 'bench'")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--per-host", type=int, default=200)
    parser.add_argument("--search", default="web", help=f"search text (the default matches 1 domain in {len(ROLES)})")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--offline-host", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure with one host frozen (default: on)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (and the database's data)")
    args = parser.parse_args()

    if args.database_url:
        name = urlsplit(args.database_url).path.lstrip("/")
        if "bench" not in name and not args.force:
            parser.error(f"the database '{name}' is emptied by this benchmark; use one named *bench* or --force")

    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-"))
    env = bench_env(tmp / "state", args.database_url)
    server = Server(env, tmp / "server.log")
    watcher = Watcher(env, tmp / "watcher.log")
    try:
        result = run(args, tmp, env, server, watcher, FrozenListener)
    finally:
        server.stop()
        watcher.stop()
        if args.database_url and not args.keep:
            with contextlib.suppress(SystemExit):
                manage(env, "flush", "--noinput")
        keep_or_remove(tmp, args.keep)
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, tmp: Path, env: dict[str, str], server: Server, watcher: Watcher,  # type: ignore[no-untyped-def]
        make_listener) -> dict:
    hosts, per_host, search = args.hosts, args.per_host, args.search
    nodes, expected = write_nodes(tmp, hosts, per_host)
    total = len(expected)
    matches = sum(1 for d in expected if search.lower() in d["name"].lower() or d["uuid"].startswith(search.lower()))
    log(f"wrote {hosts} node files with {total} domains in {tmp}; '{search}' matches {matches}")

    database = "PostgreSQL" if args.database_url else "SQLite"
    log(f"migrating a fresh {database} database")
    token = prepare_database(env, flush=bool(args.database_url))

    server.start()
    log(f"uvicorn answers on 127.0.0.1:{server.port}")
    api = Client(server.port, token)

    started = time.perf_counter()
    host_ids = []
    for h, node in enumerate(nodes, start=1):
        row = api.json("POST", "/api/v1/hosts/", {"name": f"bench-h{h:02d}", "uri": f"test+unix://{node}"},
                       expect=201)
        host_ids.append(row["id"])
        log(f"registered {row['name']} ({sum(row['domain_counts'].values())} domains)")
    register_seconds = round(time.perf_counter() - started, 2)

    # The watcher holds a connection to every host (and resynchronises each) while the list is measured.
    watcher.start()
    watcher.wait_for_log("resynchronised", count=hosts)
    log(f"the watcher holds all {hosts} hosts")

    # The cache must hold exactly what the node files define.
    listed_hosts = api.json("GET", "/api/v1/hosts/")["count"]
    first = api.json("GET", "/api/v1/domains/")
    states = {s: api.json("GET", f"/api/v1/domains/?state={s}")["count"] for s in RUNSTATES}
    want_states = {s: sum(1 for d in expected if d["state"] == s) for s in RUNSTATES}
    found = api.json("GET", f"/api/v1/domains/?{urlencode({'search': search})}")
    if (listed_hosts, first["count"], states, found["count"]) != (hosts, total, want_states, matches):
        fail(f"the cache is wrong: {listed_hosts} hosts, {first['count']} domains, "
             f"states {states} (want {want_states}), {found['count']} found (want {matches})")
    page_size = len(found["results"])
    log(f"cache checked: {total} domains ({want_states}), {matches} match '{search}', {page_size} per page")

    def search_ok(data: bytes) -> None:
        body = json.loads(data)
        if body["count"] != matches or len(body["results"]) != page_size:
            fail(f"search answered {body['count']} / {len(body['results'])} rows")

    search_path = f"/api/v1/domains/?{urlencode({'search': search})}"
    n, w = args.requests, args.warmup
    api_search = timed(api, search_path, n, w, search_ok)
    report("API search", api_search)
    api_first = timed(api, "/api/v1/domains/", n, w)
    report("API first page", api_first)

    browser = Client(server.port)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    first_name = sorted(d["name"] for d in expected if search.lower() in d["name"].lower())[0].encode()

    def html_ok(data: bytes) -> None:
        if first_name not in data:
            fail(f"the HTML list does not show {first_name.decode()}")

    html_path = f"/domains/?{urlencode({'search': search})}"
    html_search = timed(browser, html_path, n, w, html_ok)
    report("HTML search", html_search)
    html_bytes = len(browser.request("GET", html_path)[2])
    reconnects = api.reconnects + browser.reconnects
    api.close()
    browser.close()

    result: dict = {"database": database.lower(), "domains": total, "hosts": hosts, "page_size": page_size,
                    "requests": n, "search": search, "search_matches": matches}
    result["api_search_median_ms"], result["api_search_p95_ms"] = summary(api_search)
    result["api_first_page_median_ms"], result["api_first_page_p95_ms"] = summary(api_first)
    result["html_search_median_ms"], result["html_search_p95_ms"] = summary(html_search)
    result["html_search_bytes"] = html_bytes

    if args.offline_host:
        result.update(offline(args, env, server, host_ids, token, search_path, search_ok, make_listener))
        reconnects += result.pop("_reconnects")

    result["watcher_stop_exit_code"], result["watcher_stop_seconds"] = watcher.stop()
    log(f"the watcher stopped on SIGTERM in {result['watcher_stop_seconds']} s "
        f"(exit code {result['watcher_stop_exit_code']})")
    result["register_seconds"] = register_seconds
    result["reconnects"] = reconnects
    result["goal_median_ms"] = GOAL_MEDIAN_MS
    medians = [result["api_search_median_ms"]]
    goals = []
    if args.offline_host:
        medians += [result["offline_host_api_search_median_ms"],
                    result["offline_host_stuck_request_api_search_median_ms"]]
        result["goal_offline_flagged_seconds"] = GOAL_OFFLINE_FLAGGED_SECONDS
        flagged = result["offline_host_flagged_seconds"]
        goals.append(flagged is not None and flagged <= GOAL_OFFLINE_FLAGGED_SECONDS)
    result["goal_met"] = all(m < GOAL_MEDIAN_MS for m in medians) and all(goals)
    return result


def freeze(env: dict[str, str], host_id: int, uri: str) -> float:
    """Point a host at `uri` in the database; the wall-clock time the change was committed."""
    out = manage(env, "shell", "-c",
                 "import time; from webvirt.hosts.models import Host; "
                 f"Host.objects.filter(pk={host_id}).update(uri={uri!r}); print(time.time())")
    return float(out.strip().splitlines()[-1])


class StatusWatch:
    """Polls a host's status through the API (its own connection) until it reads 'offline'."""

    def __init__(self, port: int, token: str, host_id: int, since: float, timeout: float = 60) -> None:
        self.client = Client(port, token)
        self.host_id, self.since, self.timeout = host_id, since, timeout
        self.flagged_after: float | None = None
        self.reason = ""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while time.time() - self.since < self.timeout:
                row = self.client.json("GET", f"/api/v1/hosts/{self.host_id}/")
                if row["status"] == "offline":
                    self.flagged_after = round(time.time() - self.since, 2)
                    self.reason = row.get("status_reason", "")
                    return
                time.sleep(0.1)
        finally:
            self.client.close()
            self.done.set()


def offline(args, env, server, host_ids, token, search_path, search_ok, make_listener) -> dict:  # type: ignore[no-untyped-def]
    """Freeze one host and measure the search again: until and after the watcher flags it offline,
    then beside a request stuck on that host."""
    listener = make_listener()
    frozen = host_ids[len(host_ids) // 2]
    uri = f"qemu+tcp://127.0.0.1:{listener.port}/system"
    log(f"freezing host {frozen}: its URI becomes {uri} (a listener that never answers)")
    server.stop()
    frozen_at = freeze(env, frozen, uri)
    server.start()
    n, w = args.requests, args.warmup
    try:
        api = Client(server.port, token)
        flag = StatusWatch(server.port, token, frozen, frozen_at)
        # The search, from the freeze until the watcher has flagged the host (and at least n requests).
        alone: list[float] = []
        while len(alone) < n + w or not flag.done.is_set():
            alone += timed(api, search_path, 1, 0, search_ok)
        alone = alone[w:]
        flagged = flag.flagged_after
        log(f"the watcher flagged the frozen host offline {flagged} s after the freeze: {flag.reason!r}"
            if flagged is not None else "the frozen host was never flagged offline")
        report(f"API search, one host frozen ({len(alone)} requests)", alone)

        # Someone opens the frozen host's page: that request waits for libvirt's timeout.
        stop = threading.Event()
        stuck: list[float] = []
        errors: list[str] = []
        browser = Client(server.port, timeout=120)
        browser.login(ADMIN_USER, ADMIN_PASSWORD)

        def open_frozen_page() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status, _msg, _data = browser.request("GET", f"/hosts/{frozen}/")
                except OSError as exc:
                    errors.append(str(exc))
                    return
                stuck.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"host page answered {status}")

        thread = threading.Thread(target=open_frozen_page, daemon=True)
        thread.start()
        time.sleep(0.5)  # let that request reach libvirt
        beside = timed(api, search_path, n, w, search_ok)
        # Only meaningful if that request was in flight the whole time.
        overlapped = not stuck and thread.is_alive()
        stop.set()
        thread.join(60)
        report("API search beside a request stuck on the frozen host", beside)
        log(f"the frozen host's page took {', '.join(f'{s:.1f}' for s in stuck)} s" + (f"; {errors}" if errors else ""))
        host_status = api.json("GET", f"/api/v1/hosts/{frozen}/")["status"]
        log(f"the frozen host is now marked '{host_status}'")
        out = {"offline_host_api_search_median_ms": 0.0, "offline_host_api_search_p95_ms": 0.0}
        out["offline_host_api_search_median_ms"], out["offline_host_api_search_p95_ms"] = summary(alone)
        out["offline_host_api_search_requests"] = len(alone)
        (out["offline_host_stuck_request_api_search_median_ms"],
         out["offline_host_stuck_request_api_search_p95_ms"]) = summary(beside)
        out["offline_host_flagged_seconds"] = flagged
        out["offline_host_page_seconds"] = round(max(stuck), 2) if stuck else None
        out["offline_host_request_in_flight"] = overlapped
        out["offline_host_status"] = host_status
        out["_reconnects"] = api.reconnects + browser.reconnects
        api.close()
        browser.close()
        return out
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
