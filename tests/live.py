"""The real processes, started for a test: the ASGI web server and event watchers.

They run as subprocesses against the test database (so tests using them need committed data:
`transactional_db`) and the test run's own Redis key prefix.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


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


def start_web(log_dir: Path, **env: str) -> tuple[Process, str]:
    """uvicorn as the Procfile runs it: without its own proxy-header handling (which would believe
    X-Forwarded-For from 127.0.0.1), so that only WEBVIRT_TRUSTED_PROXIES decides."""
    port = free_port()
    web = Process("web", [str(ROOT / ".venv/bin/uvicorn"), "webvirt.asgi:application", "--host", "127.0.0.1",
                          "--port", str(port), "--ws", "websockets", "--ws-per-message-deflate", "false",
                          "--no-proxy-headers", "--log-level", "warning", "--timeout-graceful-shutdown", "2"],
                  log_dir, **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            return web, url
        except OSError:
            if web.proc.poll() is not None:
                break
            time.sleep(0.2)
    output = web.output()
    web.stop()
    raise RuntimeError(f"the web server did not start:\n{output}")


def start_watcher(log_dir: Path, holder: str = "w1") -> Process:
    return Process(f"watcher-{holder}", [sys.executable, "manage.py", "watch", "--holder", holder], log_dir)


def start_worker(log_dir: Path, concurrency: int = 2, name: str = "worker") -> Process:
    """A real Celery worker on the test database and the run's Redis prefix; it runs every kind of job."""
    return Process(name, [str(ROOT / ".venv/bin/celery"), "-A", "webvirt", "worker", "-l", "warning",
                          "--concurrency", str(concurrency), "--hostname", f"{name}-{os.getpid()}@%h"], log_dir)
