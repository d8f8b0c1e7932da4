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
   (logged in through the login form);
6. with --offline-host (the default): points one host at a TCP listener on 127.0.0.1 that accepts and
   never answers (the URI is changed in the database and the server restarted, so it holds no
   connection opened under the old URI), then measures the same search again, first alone and then
   while another client has the frozen host's page open (that request waits for libvirt's timeout).

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
A --database-url database is emptied (`manage.py flush`) before and after the run, so its name
must contain "bench" unless --force is given.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
ROLES = ("web", "db", "cache", "worker", "build")
UUID_NAMESPACE = uuid.UUID("5f1d8a52-3c1e-4b8e-9a57-6c0f1a2b3c4d")
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
# <test:runstate> takes a virDomainState number.
RUNSTATES = {"running": 1, "paused": 3, "shutoff": 5}
ADMIN_USER, ADMIN_PASSWORD = "benchadmin", "bench-" + uuid.uuid4().hex
GOAL_MEDIAN_MS = 150.0


def log(message: str) -> None:
    print(f"list_scale: {message}", file=sys.stderr, flush=True)


# Fixtures ----------------------------------------------------------------------------------------

def domain_state(host: int, index: int) -> str:
    """A deterministic mix: about 60% running, 30% shut off, 10% paused."""
    slot = (host * 7 + index * 13) % 10
    return "shutoff" if slot < 3 else "paused" if slot == 3 else "running"


def write_nodes(folder: Path, hosts: int, per_host: int) -> tuple[list[Path], list[dict]]:
    """Write one node file per host; return their paths and what every domain should look like."""
    paths, domains = [], []
    for h in range(1, hosts + 1):
        parts = ["<node>"]
        for i in range(per_host):
            role = ROLES[i % len(ROLES)]
            name = f"bench-h{h:02d}-{role}-{i:04d}"
            state = domain_state(h, i)
            vcpus = (1, 2, 4, 8)[(h + i) % 4]
            memory = (512, 1024, 2048, 4096, 8192)[(h * 3 + i) % 5]
            dom_uuid = str(uuid.uuid5(UUID_NAMESPACE, name))
            runstate = f"<test:runstate>{RUNSTATES[state]}</test:runstate>" if state != "running" else ""
            parts.append(
                f"<domain type='test' xmlns:test='{TEST_NS}'><name>{name}</name><uuid>{dom_uuid}</uuid>"
                f"<memory unit='MiB'>{memory}</memory><currentMemory unit='MiB'>{memory}</currentMemory>"
                f"<vcpu>{vcpus}</vcpu><os><type arch='x86_64'>hvm</type></os>{runstate}</domain>")
            domains.append({"name": name, "uuid": dom_uuid, "state": state, "host": h})
        parts.append("</node>\n")
        path = folder / f"node{h:02d}.xml"
        path.write_text("\n".join(parts))
        paths.append(path)
    return paths, domains


# Processes ---------------------------------------------------------------------------------------

def bench_env(state_dir: Path, database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["WEBVIRT_STATE_DIR"] = str(state_dir)
    env["DJANGO_SETTINGS_MODULE"] = "webvirt.settings"
    env["WEBVIRT_LOG_LEVEL"] = "WARNING"
    env.pop("WEBVIRT_DEBUG", None)
    # Never inherit the developer's database: SQLite in the temporary state folder unless asked.
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if "REDIS_URL" not in env:
        env_file = ROOT / ".state" / "env"
        if env_file.exists():
            match = re.search(r"^export REDIS_URL=(.+)$", env_file.read_text(), re.M)
            if match:
                env["REDIS_URL"] = match.group(1).strip().strip("'\"")
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"list_scale: manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The web process, started as the Procfile starts it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(UVICORN), "webvirt.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                 "--ws", "websockets", "--ws-per-message-deflate", "false"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"list_scale: the server exited:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/accounts/login/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"list_scale: the server did not answer within 30 s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""


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


# HTTP --------------------------------------------------------------------------------------------

class Client:
    """One persistent (keep-alive) HTTP connection, with a token or a session cookie."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 60) -> None:
        self.port, self.timeout = port, timeout
        self.headers = {"Authorization": f"Token {token}"} if token else {}
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        all_headers = {**self.headers, **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed the kept-alive connection; that costs a reconnect, count it.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.reconnects += 1
                if attempt == 2:
                    raise
        for header in response.msg.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                self.cookies[key] = morsel.value
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return response.status, response.msg, data

    def json(self, method: str, path: str, payload: dict | None = None, expect: int = 200) -> dict:
        body = json.dumps(payload).encode() if payload is not None else None
        status, _msg, data = self.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        if status != expect:
            raise SystemExit(f"list_scale: {method} {path} answered {status}, expected {expect}: {data[:500]!r}")
        return json.loads(data)

    def login(self, username: str, password: str) -> None:
        status, _msg, page = self.request("GET", "/accounts/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or not match:
            raise SystemExit("list_scale: the login page has no CSRF token")
        form = urlencode({"username": username, "password": password, "next": "/domains/",
                          "csrfmiddlewaretoken": match.group(1).decode()}).encode()
        status, _msg, page = self.request("POST", "/accounts/login/", form,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"list_scale: logging in failed ({status}): {page[:300]!r}")

    def close(self) -> None:
        self.conn.close()


def timed(client: Client, path: str, requests: int, warmup: int, check=None) -> list[float]:  # type: ignore[no-untyped-def]
    """Milliseconds per GET (response fully read), after `warmup` untimed requests."""
    times = []
    for n in range(warmup + requests):
        started = time.perf_counter()
        status, _msg, data = client.request("GET", path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise SystemExit(f"list_scale: GET {path} answered {status}: {data[:300]!r}")
        if check is not None:
            check(data)
        if n >= warmup:
            times.append(elapsed)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(values: list[float]) -> tuple[float, float]:
    return round(statistics.median(values), 1), round(p95(values), 1)


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
    try:
        result = run(args, tmp, env, server, FrozenListener)
    finally:
        server.stop()
        if args.database_url and not args.keep:
            with contextlib.suppress(SystemExit):
                manage(env, "flush", "--noinput")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, tmp: Path, env: dict[str, str], server: Server, make_listener) -> dict:  # type: ignore[no-untyped-def]
    hosts, per_host, search = args.hosts, args.per_host, args.search
    nodes, expected = write_nodes(tmp, hosts, per_host)
    total = len(expected)
    matches = sum(1 for d in expected if search.lower() in d["name"].lower() or d["uuid"].startswith(search.lower()))
    log(f"wrote {hosts} node files with {total} domains in {tmp}; '{search}' matches {matches}")

    database = "PostgreSQL" if args.database_url else "SQLite"
    log(f"migrating a fresh {database} database")
    manage(env, "migrate", "--noinput")
    if args.database_url:
        manage(env, "flush", "--noinput")
    manage(env, "shell", "-c",
           "from django.contrib.auth import get_user_model; "
           f"get_user_model().objects.create_superuser({ADMIN_USER!r}, '', {ADMIN_PASSWORD!r})")
    token = manage(env, "apitoken", ADMIN_USER).strip().splitlines()[-1]

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

    # The cache must hold exactly what the node files define.
    listed_hosts = api.json("GET", "/api/v1/hosts/")["count"]
    first = api.json("GET", "/api/v1/domains/")
    states = {s: api.json("GET", f"/api/v1/domains/?state={s}")["count"] for s in RUNSTATES}
    want_states = {s: sum(1 for d in expected if d["state"] == s) for s in RUNSTATES}
    found = api.json("GET", f"/api/v1/domains/?{urlencode({'search': search})}")
    if (listed_hosts, first["count"], states, found["count"]) != (hosts, total, want_states, matches):
        raise SystemExit(f"list_scale: the cache is wrong: {listed_hosts} hosts, {first['count']} domains, "
                         f"states {states} (want {want_states}), {found['count']} found (want {matches})")
    page_size = len(found["results"])
    log(f"cache checked: {total} domains ({want_states}), {matches} match '{search}', {page_size} per page")

    def search_ok(data: bytes) -> None:
        body = json.loads(data)
        if body["count"] != matches or len(body["results"]) != page_size:
            raise SystemExit(f"list_scale: search answered {body['count']} / {len(body['results'])} rows")

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
            raise SystemExit(f"list_scale: the HTML list does not show {first_name.decode()}")

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

    result["register_seconds"] = register_seconds
    result["reconnects"] = reconnects
    result["goal_median_ms"] = GOAL_MEDIAN_MS
    medians = [result["api_search_median_ms"]]
    if args.offline_host:
        medians += [result["offline_host_api_search_median_ms"],
                    result["offline_host_stuck_request_api_search_median_ms"]]
    result["goal_met"] = all(m < GOAL_MEDIAN_MS for m in medians)
    return result


def offline(args, env, server, host_ids, token, search_path, search_ok, make_listener) -> dict:  # type: ignore[no-untyped-def]
    """Freeze one host and measure the search again: alone, then beside a request stuck on that host."""
    listener = make_listener()
    frozen = host_ids[len(host_ids) // 2]
    uri = f"qemu+tcp://127.0.0.1:{listener.port}/system"
    log(f"freezing host {frozen}: its URI becomes {uri} (a listener that never answers)")
    server.stop()
    manage(env, "shell", "-c",
           f"from webvirt.hosts.models import Host; Host.objects.filter(pk={frozen}).update(uri={uri!r})")
    server.start()
    n, w = args.requests, args.warmup
    try:
        api = Client(server.port, token)
        alone = timed(api, search_path, n, w, search_ok)
        report("API search, one host frozen", alone)

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
        status = api.json("GET", f"/api/v1/hosts/{frozen}/")["status"]
        log(f"the frozen host is now marked '{status}'")
        out = {"offline_host_api_search_median_ms": 0.0, "offline_host_api_search_p95_ms": 0.0}
        out["offline_host_api_search_median_ms"], out["offline_host_api_search_p95_ms"] = summary(alone)
        (out["offline_host_stuck_request_api_search_median_ms"],
         out["offline_host_stuck_request_api_search_p95_ms"]) = summary(beside)
        out["offline_host_page_seconds"] = round(max(stuck), 2) if stuck else None
        out["offline_host_request_in_flight"] = overlapped
        out["offline_host_status"] = status
        out["_reconnects"] = api.reconnects + browser.reconnects
        api.close()
        browser.close()
        return out
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
