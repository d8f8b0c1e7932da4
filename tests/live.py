"""The real processes, started for a test: the ASGI web server, event watchers, workers and nginx.

They run as subprocesses against the test database (so tests using them need committed data:
`transactional_db`) and the test run's own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"  # Debian's nginx-light (scripts/setup.sh)
# How long a test waits for a WebSocket message it expects: generous, since a loaded machine answers
# late; a socket silent for this long has hung, and the test fails instead of hanging with it.
RECV_TIMEOUT = 30.0
# How long a test waits for something the live processes must do (an event to arrive, a host to come
# online, a watcher to take over): a limit for something that never happens, not a speed figure
# (how fast events travel is measured by bench/events_latency.py).
EVENT_TIMEOUT = 60.0


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition",
             interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def database_url() -> str:
    """The URL of the database this test run uses, for processes started by the tests."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{user}@"
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
           "WEBVIRT_REDIS_PREFIX": settings.REDIS_PREFIX, "WEBVIRT_STATE_DIR": str(settings.STATE_DIR),
           "PYTHONUNBUFFERED": "1", **extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A subprocess whose output goes to a log file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, args: list[str], log_dir: Path, **env: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=process_env(**env), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10) -> int:
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            code = self.proc.wait()
        self.log.close()
        return code


def spawn_web(log_dir: Path, *, name: str = "web", workers: int = 1, **env: str) -> tuple[Process, str]:
    """Start uvicorn as the Procfile runs it, without waiting for it to answer (see wait_for_web).

    Without uvicorn's own proxy-header handling (which would believe X-Forwarded-For from 127.0.0.1),
    so that only WEBVIRT_TRUSTED_PROXIES decides. `workers` > 1: that many processes on one port."""
    port = free_port()
    web = Process(name, [str(ROOT / ".venv/bin/uvicorn"), "webvirt.asgi:application", "--host", "127.0.0.1",
                         "--port", str(port), "--workers", str(workers), "--ws", "websockets",
                         "--ws-per-message-deflate", "false", "--no-proxy-headers", "--log-level", "warning",
                         "--timeout-graceful-shutdown", "2"],
                  log_dir, **env)
    return web, f"http://127.0.0.1:{port}"


def wait_for_web(process: Process, url: str, timeout: float = 20) -> tuple[Process, str]:
    """Wait until `url` answers its login page; stop the process and fail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            return process, url
        except OSError:
            if process.proc.poll() is not None:
                break
            time.sleep(0.2)
    output = process.output()
    process.stop()
    raise RuntimeError(f"{process.name} did not start:\n{output}")


def start_web(log_dir: Path, *, name: str = "web", workers: int = 1, **env: str) -> tuple[Process, str]:
    """uvicorn as the Procfile runs it, once it answers; returns the process and its base URL."""
    return wait_for_web(*spawn_web(log_dir, name=name, workers=workers, **env))


def start_watcher(log_dir: Path, holder: str = "w1") -> Process:
    return Process(f"watcher-{holder}", [sys.executable, "manage.py", "watch", "--holder", holder], log_dir)


def start_beat(log_dir: Path, level: str = "warning", **env: str) -> Process:
    """Celery beat on the run's Redis prefix, its schedule file in `log_dir`; `env` shortens the
    intervals of its entries (WEBVIRT_*_INTERVAL)."""
    return Process("beat", [str(ROOT / ".venv/bin/celery"), "-A", "webvirt", "beat", "-l", level,
                            "--schedule", str(log_dir / "beat-schedule")], log_dir, **env)


def start_worker(log_dir: Path, concurrency: int = 2, name: str = "worker") -> Process:
    """A real Celery worker on the test database and the run's Redis prefix; it runs every kind of job."""
    return Process(name, [str(ROOT / ".venv/bin/celery"), "-A", "webvirt", "worker", "-l", "warning",
                          "--concurrency", str(concurrency), "--hostname", f"{name}-{os.getpid()}@%h"], log_dir)


@dataclass
class Nginx:
    process: Process
    url: str  # http://127.0.0.1:<port>
    https_url: str | None = None  # with tls_dir: https://127.0.0.1:<port>


def start_nginx(log_dir: Path, backends: list[str], tls_dir: Path | None = None) -> Nginx:
    """The real nginx with the repository's server block (docs/nginx/webvirt.conf) in front of
    `backends` (web processes' http://127.0.0.1:<port> URLs), on a free port; with `tls_dir`
    (fullchain.pem, privkey.pem), also HTTPS through docs/nginx/tls.conf, on another.

    Only the listen lines, the certificate folder and the upstream (docs/nginx/upstream.conf is
    Docker's) are the test's own; prefix, pid, logs and temporary folders are under log_dir/nginx.
    Every response says which web process answered it, in X-Upstream."""
    folder = log_dir / "nginx"
    (folder / "tls.d").mkdir(parents=True)
    port = free_port()
    (folder / "site.conf").write_text(_one_listen((ROOT / "docs/nginx/webvirt.conf").read_text(), "listen 80;",
                                                  f"listen 127.0.0.1:{port};"))
    https_url = None
    if tls_dir is not None:
        tls_port = free_port()
        tls = _one_listen((ROOT / "docs/nginx/tls.conf").read_text(), "listen 443 ssl;",
                          f"listen 127.0.0.1:{tls_port} ssl;")
        (folder / "tls.d" / "webvirt.conf").write_text(tls.replace("/etc/nginx/tls/", f"{tls_dir}/"))
        https_url = f"https://127.0.0.1:{tls_port}"
    servers = "".join(f"        server {url.removeprefix('http://')};\n" for url in backends)
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                           "uwsgi", "scgi"))
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""  # workers may write temp
    (folder / "nginx.conf").write_text(f"""{user}
worker_processes 1;
pid {folder / "nginx.pid"};
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temp}
    add_header X-Upstream $upstream_addr always;
    upstream webvirt {{
{servers}    }}
    include site.conf;
}}
""")
    proxy = Process("nginx", [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                              "-e", str(folder / "error.log"), "-g", "daemon off;"], log_dir)
    _wait_for_port(proxy, port)
    return Nginx(proxy, f"http://127.0.0.1:{port}", https_url)


def _one_listen(text: str, listen: str, instead: str) -> str:
    assert text.count(listen) == 1, f"the repository's nginx configuration should say `{listen}` once"
    return text.replace(listen, instead)


def _wait_for_port(process: Process, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    output = process.output()
    process.stop()
    raise RuntimeError(f"{process.name} did not start:\n{output}")


async def recv(ws: Any, timeout: float = RECV_TIMEOUT) -> str | bytes:
    """The next message on an asyncio WebSocket client (websockets.connect), failing after `timeout` s.

    A closed socket still raises ConnectionClosed, as ws.recv() does. (Sync clients pass
    timeout=RECV_TIMEOUT to their own recv.)"""
    try:
        async with asyncio.timeout(timeout):
            return await ws.recv()
    except TimeoutError:
        raise AssertionError(f"no WebSocket message within {timeout:g} s") from None
