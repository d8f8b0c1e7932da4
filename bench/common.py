"""What the benchmarks share: a private state, `manage.py`, the web and watcher processes, an HTTP client.

Every benchmark runs on a state of its own (a temporary WEBVIRT_STATE_DIR with SQLite in it unless a
database URL is given) and its own Redis key prefix, so neither the developer's data nor a running
development server or watcher is touched. No Django imports: the processes under test are separate.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
ADMIN_USER, ADMIN_PASSWORD = "benchadmin", "bench-" + uuid.uuid4().hex


def _name() -> str:
    return Path(sys.argv[0]).stem


def log(message: str) -> None:
    print(f"{_name()}: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"{_name()}: {message}")


# Processes ---------------------------------------------------------------------------------------

def bench_env(state_dir: Path, database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["WEBVIRT_STATE_DIR"] = str(state_dir)
    env["DJANGO_SETTINGS_MODULE"] = "webvirt.settings"
    env["WEBVIRT_LOG_LEVEL"] = "WARNING"
    # Leases and channel-layer groups of our own: a development watcher must not hold our hosts.
    env["WEBVIRT_REDIS_PREFIX"] = f"webvirt-bench-{os.getpid()}"
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


def keep_or_remove(tmp: Path, keep: bool) -> None:
    """The end of a run: its temporary folder is deleted, or kept (and named) with --keep."""
    if keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare_database(env: dict[str, str], flush: bool) -> str:
    """Migrate (and empty, if asked), create the administrator; return their API token."""
    manage(env, "migrate", "--noinput")
    if flush:
        manage(env, "flush", "--noinput")
    manage(env, "shell", "-c",
           "from django.contrib.auth import get_user_model; "
           f"get_user_model().objects.create_superuser({ADMIN_USER!r}, '', {ADMIN_PASSWORD!r})")
    return manage(env, "apitoken", ADMIN_USER).strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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
                fail(f"the server exited:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/accounts/login/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        fail(f"the server did not answer within 30 s:\n{self.tail()}")

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
        return _tail(self.log_path)


class Watcher:
    """The event watcher (`manage.py watch`), as the Procfile starts it."""

    def __init__(self, env: dict[str, str], log_path: Path, holder: str = "bench") -> None:
        self.env, self.log_path, self.holder = env, log_path, holder
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([str(PYTHON), "manage.py", "watch", "--holder", self.holder], cwd=ROOT,
                                         env={**self.env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Wait until `text` appears `count` times in the watcher's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                fail(f"the watcher exited:\n{self.tail()}")
            if self.output().count(text) >= count:
                return
            time.sleep(0.1)
        fail(f"the watcher did not log '{text}' {count} times within {timeout:g} s:\n{self.tail()}")

    def stop(self, timeout: float = 15) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it had to be killed) and how long the stop took."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        return code, round(time.monotonic() - started, 2)

    def tail(self) -> str:
        return _tail(self.log_path)


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
            fail(f"{method} {path} answered {status}, expected {expect}: {data[:500]!r}")
        return json.loads(data)

    def login(self, username: str, password: str) -> None:
        status, _msg, page = self.request("GET", "/accounts/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or not match:
            fail("the login page has no CSRF token")
        form = urlencode({"username": username, "password": password, "next": "/domains/",
                          "csrfmiddlewaretoken": match.group(1).decode()}).encode()
        status, _msg, page = self.request("POST", "/accounts/login/", form,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or "sessionid" not in self.cookies:
            fail(f"logging in failed ({status}): {page[:300]!r}")

    def close(self) -> None:
        self.conn.close()


# Figures -----------------------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (0.95 -> p95) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values)


# A bench's own webvirt: processes, the API, waiting for the web server ------------------------------

class BenchError(SystemExit):
    """A bench that cannot go on: its message is printed and the run exits with status 1 (after cleanup)."""


class Processes:
    """The web server, worker and watcher of this run, each logging to a file; stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise BenchError(f"the {name} exited:\n{self.tail(name)}")

    def log_tails(self) -> None:
        """Every process's last lines to stderr: what a failed run needs to be understood."""
        for name in self.procs:
            log(f"{name} log:\n{self.tail(name)}")

    def tail(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Api:
    """The REST API over one keep-alive connection, with a token."""

    def __init__(self, port: int, token: str) -> None:
        self.client = Client(port, token)

    def call(self, method: str, path: str, payload: dict | None = None, expect: int = 200) -> dict | list:
        body = json.dumps(payload).encode() if payload is not None else None
        status, _msg, data = self.client.request(method, path, body, {"Content-Type": "application/json"})
        if status != expect:
            raise BenchError(f"{method} {path} answered {status}, expected {expect}: {data[:800]!r}")
        return json.loads(data) if data else {}

    def obj(self, method: str, path: str, payload: dict | None = None, expect: int = 200) -> dict:
        answer = self.call(method, path, payload, expect)
        assert isinstance(answer, dict)
        return answer

    def wait_job(self, job_id: int, timeout: float = 300, poll: float = 0.1) -> dict:
        """The job once it has ended (succeeded, failed or cancelled), polled every `poll` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.obj("GET", f"/api/v1/jobs/{job_id}/")
            if job["state"] not in ("queued", "running"):
                return job
            time.sleep(poll)
        raise BenchError(f"job {job_id} did not end within {timeout:g} s")


def wait_for_web(port: int, procs: Processes) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        procs.check()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/accounts/login/")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the web server did not answer within 30 s:\n{procs.tail('web')}")


# Users, pools and templates (benches on real QEMU) ------------------------------------------------

def create_users(env: dict[str, str], usernames: list[str]) -> None:
    """Ordinary (non-administrator) users, made in one `manage.py shell` run."""
    manage(env, "shell", "-c",
           "from django.contrib.auth import get_user_model; U = get_user_model(); "
           f"[U.objects.create_user(n, '', 'bench-' + n + {uuid.uuid4().hex!r}) for n in {usernames!r}]")


def private_pool(conn, folder: Path, name: str):  # type: ignore[no-untyped-def]
    """A transient directory pool in `folder` (made, and readable by qemu): libvirt forgets it when destroyed."""
    folder.mkdir(mode=0o755, exist_ok=True)
    return conn.storagePoolCreateXML(f"<pool type='dir'><name>{name}</name><target><path>{folder}</path>"
                                     "</target></pool>", 0)


def make_template(api: Api, host: int, domain_xml: str, name: str, users: list[str] | None = None) -> int:
    """Define a (shut-off) domain through the API and make a template of it, granted to `users`; its id."""
    source = api.obj("POST", "/api/v1/domains/", {"host": host, "xml": domain_xml}, expect=201)["id"]
    return api.obj("POST", "/api/v1/templates/", {"domain": source, "name": name, "users": users or []},
                   expect=201)["id"]


# Test-driver hosts full of domains (list_scale, list_load, scale_out, metrics) ---------------------

ROLES = ("web", "db", "cache", "worker", "build")
UUID_NAMESPACE = uuid.UUID("5f1d8a52-3c1e-4b8e-9a57-6c0f1a2b3c4d")
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
# <test:runstate> takes a virDomainState number.
RUNSTATES = {"running": 1, "paused": 3, "shutoff": 5}


def domain_state(host: int, index: int) -> str:
    """A deterministic mix: about 60% running, 30% shut off, 10% paused."""
    slot = (host * 7 + index * 13) % 10
    return "shutoff" if slot < 3 else "paused" if slot == 3 else "running"


def write_nodes(folder: Path, hosts: int, per_host: int, first: int = 1) -> tuple[list[Path], list[dict]]:
    """Write one libvirt test-driver node file per host (hosts `first` .. `first + hosts - 1`); return their
    paths and what every domain should look like. Names are `bench-hNN-<role>-NNNN`, UUIDs fixed by name."""
    paths, domains = [], []
    for h in range(first, first + hosts):
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


def add_hosts(env: dict[str, str], csv_path: Path, hosts: list[tuple[str, str]]) -> float:
    """Register (name, uri) hosts through one `manage.py addhosts` (each tested, its domains loaded);
    its wall-clock seconds."""
    csv_path.write_text("\n".join(["name,uri", *(f"{name},{uri}" for name, uri in hosts)]) + "\n")
    started = time.monotonic()
    manage(env, "addhosts", str(csv_path))
    return round(time.monotonic() - started, 2)


def ensure_database(url: str) -> None:
    """Create the bench database if PostgreSQL does not have it yet."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    found = subprocess.run(["psql", admin, "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        fail(f"cannot reach PostgreSQL at {admin}: {found.stderr.strip()}")
    if found.stdout.strip() != "1":
        subprocess.run(["psql", admin, "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)


# Many clients at once ------------------------------------------------------------------------------

def concurrent_gets(clients: list[Client], path: str | Callable[[], str], requests: int, warmup: int,
                    check: Callable[[bytes], None] | None = None) -> list[float]:
    """Every client GETs `path` `warmup + requests` times at once with the others; milliseconds of the
    timed ones. `path` may be a function giving each request's path. `check(body)` may refuse an answer
    (BenchError)."""
    next_path = path if callable(path) else lambda: path
    times: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(len(clients))

    def run(client: Client) -> None:
        barrier.wait()
        for n in range(warmup + requests):
            asked = next_path()
            started = time.perf_counter()
            status, _msg, data = client.request("GET", asked)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                errors.append(f"GET {asked} answered {status}: {data[:200]!r}")
                return
            if check is not None:
                try:
                    check(data)
                except SystemExit as exc:
                    errors.append(str(exc))
                    return
            if n >= warmup:
                times.append(elapsed)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(errors[0])
    return times


def figures(values: list[float]) -> dict:
    return {"median_ms": round(median(values), 1), "p95_ms": round(percentile(values, 0.95), 1),
            "requests": len(values)}
