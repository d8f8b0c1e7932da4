#!/usr/bin/env python3
"""Past one process: 10,000 domains on 100 hosts, served by 1 web process and 1 watcher, then by 3 web
processes behind nginx and 2 watchers, side by side.

    .venv/bin/python bench/scale_out.py [--database-url postgres://postgres@127.0.0.1:5432/webvirt_bench]
                                        [--layouts 1x1,3x2] [--hosts 100] [--per-host 100]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR, a Redis key prefix of its own, and
the PostgreSQL database given, which must be named *bench* and is emptied before and after):

1. writes one libvirt test-driver node file per host (100 domains each), migrates, creates an
   administrator, and registers the hosts at once with `manage.py addhosts`, plus the shared test
   driver `test+unix:///default` (the one host whose changes other connections see);
2. for each layout WxM (web processes x watchers; default 1x1, then 3x2):
   - starts W uvicorn processes on ports of their own and a local nginx in front of them with the
     repository's server block (docs/nginx/), then M watchers at once; the resync time runs from
     the watchers' start until every host has been resynchronised (their logs say so);
   - 50 concurrent clients (threads, each its own keep-alive connection through nginx) read the
     list API's first page and the HTML list's first page (signed in through the login form);
     median and p95 of each;
   - 200 event sockets through nginx (spread over the web processes by nginx's round robin)
     while a test-driver domain is suspended and resumed with libvirt: per client and change,
     the time from the libvirt call to the event's arrival (median, p99, lost);
   - with 2 watchers or more: SIGKILLs the watcher that holds the shared host, changes that host
     meanwhile with libvirt (defines, starts and undefines domains), and reports how long until
     every host it held is held and resynchronised by another watcher, and how many of the changes
     the cache (the list API) is missing afterwards.
Goals: list median under 150 ms, event p99 at most 250 ms, takeover at most 30 s with 0 changes lost,
resync of 100 hosts within 60 s.

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
import redis

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
    figures,
    free_port,
    keep_or_remove,
    log,
    manage,
    prepare_database,
    wait_for_web,
)
from events_latency import TEST_URI, lifecycle_change, run_series, test_domain_xml
from list_scale import write_nodes

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/webvirt_bench_scale"
NGINX = "/usr/sbin/nginx"
NGINX_SERVER = ROOT / "docs" / "nginx" / "webvirt.conf"
GOALS = {"list_median_ms": 150.0, "event_p99_ms": 250.0, "takeover_seconds": 30.0, "resync_seconds": 60.0}
SHARED_HOST = "shared-test-driver"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# nginx in front of the web processes --------------------------------------------------------------

class Proxy:
    """A private nginx: the repository's server block, an upstream of this run's web processes."""

    def __init__(self, folder: Path, backends: list[int]) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        upstream = "".join(f"    server 127.0.0.1:{p};\n" for p in backends)
        server = NGINX_SERVER.read_text().replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        temp = "".join(f"    {kind}_temp_path {folder}/{kind};\n" for kind in
                       ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            f"worker_processes 2;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n    access_log off;\n{temp}"
            f"    upstream webvirt {{\n{upstream}        keepalive 64;\n    }}\n{server}\n}}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"), "-g", "daemon off;"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# One layout: W web processes, M watchers -----------------------------------------------------------

class Stack:
    def __init__(self, env: dict[str, str], folder: Path, web: int, watchers: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.procs = folder, Processes(env, folder)
        self.web_ports = [free_port() for _ in range(web)]
        self.proxy = Proxy(folder / "nginx", self.web_ports)
        self.watchers = [f"w{i + 1}" for i in range(watchers)]

    def start_web(self) -> None:
        for i, port in enumerate(self.web_ports):
            self.procs.start(f"web{i + 1}", [str(UVICORN), "webvirt.asgi:application", "--host", "127.0.0.1",
                                             "--port", str(port), "--ws", "websockets",
                                             "--ws-per-message-deflate", "false", "--no-proxy-headers",
                                             "--log-level", "warning"])
        for port in self.web_ports:
            wait_for_web(port, self.procs)
        self.proxy.start()
        wait_for_web(self.proxy.port, self.procs)

    def start_watchers(self) -> float:
        started = time.monotonic()
        for holder in self.watchers:
            self.procs.start(holder, [str(PYTHON), "manage.py", "watch", "--holder", holder])
        return started

    def log_of(self, holder: str) -> str:
        path = self.folder / f"{holder}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def resynced(self, holders: list[str], offsets: dict[str, int] | None = None) -> int:
        offsets = offsets or {}
        return sum(self.log_of(h)[offsets.get(h, 0):].count(" resynchronised") for h in holders)

    def stop(self) -> None:
        self.proxy.stop()
        self.procs.stop()


def wait_until(check, timeout: float, what: str, procs: Processes) -> float:  # type: ignore[no-untyped-def]
    """Poll `check()` every 50 ms; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        procs.check()
        time.sleep(0.05)
    raise BenchError(f"{what} did not happen within {timeout:g} s")


# The list under 50 concurrent clients ------------------------------------------------------------

def list_load(port: int, token: str, clients: int, requests: int) -> dict:
    api = [Client(port, token) for _ in range(clients)]
    browsers = [Client(port) for _ in range(clients)]
    try:
        for browser in browsers:
            browser.login(ADMIN_USER, ADMIN_PASSWORD)
        out = {"api": figures(concurrent_gets(api, "/api/v1/domains/", requests, 2)),
               "html": figures(concurrent_gets(browsers, "/domains/", requests, 2))}
    finally:
        for client in api + browsers:
            client.close()
    log(f"  list, {clients} clients: API median {out['api']['median_ms']} ms p95 {out['api']['p95_ms']} ms; "
        f"HTML median {out['html']['median_ms']} ms p95 {out['html']['p95_ms']} ms")
    return out


# A watcher killed ----------------------------------------------------------------------------------

def lease_holder(env: dict[str, str], host_id: int) -> str | None:
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        value = client.get(f"{env['WEBVIRT_REDIS_PREFIX']}:lease:host:{host_id}")
    finally:
        client.close()
    return value.decode() if isinstance(value, bytes) else None


def holders(env: dict[str, str], host_ids: list[int]) -> dict[int, str | None]:
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        values = client.mget([f"{env['WEBVIRT_REDIS_PREFIX']}:lease:host:{h}" for h in host_ids])
    finally:
        client.close()
    return {h: v.decode() if isinstance(v, bytes) else None for h, v in zip(host_ids, values, strict=True)}


class Changes:
    """Changes made to the shared host while its watcher is dead, and what the cache must show after."""

    def __init__(self, conn: libvirt.virConnect, tag: str, count: int = 10) -> None:
        self.conn, self.tag, self.count = conn, tag, count
        self.doomed = [conn.defineXML(test_domain_xml(f"{tag}-old-{i}", str(uuid.uuid4()))) for i in range(count)]

    def make(self) -> None:
        """`count` domains defined, half of them started, the `count` older ones undefined."""
        for i in range(self.count):
            dom = self.conn.defineXML(test_domain_xml(f"{self.tag}-new-{i}", str(uuid.uuid4())))
            if i % 2 == 0:
                dom.create()
        for dom in self.doomed:
            dom.undefine()

    def total(self) -> int:
        return self.count + self.count // 2 + self.count

    def missing(self, api: Client, host_id: int) -> int:
        """How many of the changes the cache does not show."""
        rows = api.json("GET", f"/api/v1/domains/?host={host_id}&search={self.tag}&page_size=500")["results"]
        state = {r["name"]: r["state"] for r in rows}
        lost = sum(1 for i in range(self.count) if f"{self.tag}-new-{i}" not in state)
        lost += sum(1 for i in range(0, self.count, 2) if state.get(f"{self.tag}-new-{i}") not in (None, "running"))
        return lost + sum(1 for i in range(self.count) if f"{self.tag}-old-{i}" in state)

    def remove(self) -> None:
        for i in range(self.count):
            with contextlib.suppress(libvirt.libvirtError):
                dom = self.conn.lookupByName(f"{self.tag}-new-{i}")
                if dom.isActive():
                    dom.destroy()
                dom.undefine()


def takeover(stack: Stack, env: dict[str, str], api: Client, conn: libvirt.virConnect, shared_id: int,
             host_ids: list[int]) -> dict:
    changes = Changes(conn, f"scale-gap-{uuid.uuid4().hex[:6]}")
    wait_until(lambda: changes.missing(api, shared_id) == changes.count, 30, "the older domains reaching the cache",
               stack.procs)
    before = holders(env, host_ids)
    victim = before[shared_id]
    if victim not in stack.watchers:
        raise BenchError(f"the shared host is held by {victim!r}, not by one of {stack.watchers}")
    orphans = [h for h, who in before.items() if who == victim]
    survivors = [w for w in stack.watchers if w != victim]
    offsets = {w: len(stack.log_of(w)) for w in survivors}
    proc = stack.procs.procs.pop(victim)
    killed = time.monotonic()
    proc.kill()
    proc.wait()
    changes.make()
    made = time.monotonic() - killed
    log(f"  killed {victim} (held {len(orphans)} hosts); {changes.total()} changes made in {made:.2f} s")

    def taken() -> bool:
        now = holders(env, orphans)
        return all(who in survivors for who in now.values()) and stack.resynced(survivors, offsets) >= len(orphans)

    leased = wait_until(taken, 120, "the takeover", stack.procs) - killed
    lost_at_takeover = changes.missing(api, shared_id)
    time.sleep(2)  # anything still on its way would arrive now; what is missing then is lost
    lost = changes.missing(api, shared_id)
    changes.remove()
    log(f"  hosts taken over and resynchronised {leased:.2f} s after the SIGKILL; "
        f"{lost} of {changes.total()} changes missing from the cache ({lost_at_takeover} at the takeover)")
    return {"killed": victim, "hosts_held": len(orphans), "takeover_seconds": round(leased, 2),
            "changes": changes.total(), "changes_lost": lost, "changes_missing_at_takeover": lost_at_takeover}


# The run -----------------------------------------------------------------------------------------

def run_layout(env: dict[str, str], tmp: Path, token: str, web: int, watchers: int, host_ids: list[int],
               shared_id: int, args: argparse.Namespace) -> dict:
    name = f"{web}web_{watchers}watcher" + ("s" if watchers > 1 else "")
    log(f"layout {name}")
    stack = Stack(env, tmp / name, web, watchers)
    conn = libvirt.open(TEST_URI)
    dom = conn.defineXML(test_domain_xml(f"scale-ev-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())))
    try:
        stack.start_web()
        started = stack.start_watchers()
        done = wait_until(lambda: stack.resynced(stack.watchers) >= len(host_ids), 300,
                          f"the resync of {len(host_ids)} hosts", stack.procs)
        resync = round(done - started, 2)
        spread = holders(env, host_ids)
        per_watcher = {w: sum(1 for who in spread.values() if who == w) for w in stack.watchers}
        log(f"  {len(host_ids)} hosts resynchronised {resync} s after the watchers started; held {per_watcher}")
        out: dict = {"web_processes": web, "watchers": watchers, "resync_seconds": resync,
                     "hosts_per_watcher": per_watcher}
        out["list"] = list_load(stack.proxy.port, token, args.clients, args.requests)
        dom.create()
        series = asyncio.run(run_series(f"ws://127.0.0.1:{stack.proxy.port}", token, dom.UUIDString(),
                                        lifecycle_change(dom), ["paused", "running"], args.sockets, args.changes,
                                        5.0)).summary()
        log(f"  events, {args.sockets} sockets: median {series['median_ms']} ms, p99 {series['p99_ms']} ms, "
            f"{series['lost']} lost")
        out["events"] = series
        if watchers > 1:
            api = Client(stack.proxy.port, token)
            try:
                out["takeover"] = takeover(stack, env, api, conn, shared_id, host_ids)
            finally:
                api.close()
        return out
    finally:
        stack.stop()
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()
        conn.close()


def register(env: dict[str, str], tmp: Path, nodes: list[Path]) -> float:
    """All hosts through one `manage.py addhosts`; its wall-clock seconds."""
    hosts = [(f"bench-h{i + 1:03d}", f"test+unix://{node}") for i, node in enumerate(nodes)]
    return add_hosts(env, tmp / "hosts.csv", [*hosts, (SHARED_HOST, TEST_URI)])


def run(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> dict:
    nodes, expected = write_nodes(tmp, args.hosts, args.per_host)
    log(f"wrote {args.hosts} node files with {len(expected)} domains; migrating a fresh PostgreSQL database")
    token = prepare_database(env, flush=True)
    # Our own connection keeps the shared test driver's state alive and makes its changes.
    keep = libvirt.open(TEST_URI)
    try:
        seconds = register(env, tmp, nodes)
        ids = json.loads(manage(env, "shell", "-c", "import json; from webvirt.hosts.models import Host; "
                                "print(json.dumps(dict(Host.objects.values_list('name', 'pk'))))").splitlines()[-1])
        log(f"registered {len(ids)} hosts with manage.py addhosts in {seconds} s")
        host_ids, shared_id = sorted(ids.values()), ids[SHARED_HOST]
        layouts = {}
        for layout in args.layouts.split(","):
            web, watchers = (int(n) for n in layout.split("x"))
            figures_ = run_layout(env, tmp, token, web, watchers, host_ids, shared_id, args)
            layouts[f"{web}x{watchers}"] = figures_
    finally:
        keep.close()
    return summarise(args, len(expected), seconds, layouts)


def summarise(args: argparse.Namespace, domains: int, register_seconds: float, layouts: dict) -> dict:
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    met = {}
    for name, out in layouts.items():
        met[name] = {"list": out["list"]["api"]["median_ms"] < GOALS["list_median_ms"]
                     and out["list"]["html"]["median_ms"] < GOALS["list_median_ms"],
                     "events": out["events"]["p99_ms"] is not None and out["events"]["p99_ms"] <= GOALS["event_p99_ms"]
                     and out["events"]["lost"] == 0,
                     "resync": out["resync_seconds"] <= GOALS["resync_seconds"]}
        if "takeover" in out:
            met[name]["takeover"] = (out["takeover"]["takeover_seconds"] <= GOALS["takeover_seconds"]
                                     and out["takeover"]["changes_lost"] == 0)
    return {"database": "postgresql", "proxy": f"nginx {version}", "hosts": args.hosts + 1,
            "domains": domains, "register_seconds": register_seconds, "clients": args.clients,
            "sockets": args.sockets, "layouts": layouts, "goals": GOALS, "goals_met": met,
            "goal_met": all(all(m.values()) for m in met.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE,
                        help=f"PostgreSQL, emptied (default {DEFAULT_DATABASE})")
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    parser.add_argument("--layouts", default="1x1,3x2",
                        help="web processes x watchers, comma-separated (default 1x1,3x2)")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--per-host", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50, help="concurrent list clients (default 50)")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per list client (default 10)")
    parser.add_argument("--sockets", type=int, default=200, help="event sockets (default 200)")
    parser.add_argument("--changes", type=int, default=40, help="suspend/resume changes timed (default 40)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    name = urlsplit(args.database_url).path.lstrip("/")
    if not args.database_url.startswith("postgres"):
        parser.error("this benchmark runs on PostgreSQL: give a postgres:// --database-url")
    if "bench" not in name and not args.force:
        parser.error(f"the database '{name}' is emptied by this benchmark; use one named *bench* or --force")
    if not Path(NGINX).exists():
        parser.error(f"{NGINX} is missing: run `make setup` (it installs nginx-light)")
    ensure_database(args.database_url)

    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-scale-"))
    env = bench_env(tmp / "state", args.database_url)
    env["WEBVIRT_DB_POOL_SIZE"] = "12"  # each of up to 3 web processes and 2 watchers: 60 of max_connections 100
    try:
        result = run(args, env, tmp)
    except BenchError as exc:
        log(str(exc))
        return 1
    finally:
        with contextlib.suppress(SystemExit):
            manage(env, "flush", "--noinput")
        keep_or_remove(tmp, args.keep)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
