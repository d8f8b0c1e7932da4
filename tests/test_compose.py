"""docker-compose.yml is valid: Debian's docker-compose 1.29 checks it without a Docker engine.

scripts/setup.sh installs docker-compose, so this test never skips: a missing binary fails it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The variables the file requires (`${VAR:?...}`); dummy values are enough to validate it.
REQUIRED_ENV = {
    "WEBVIRT_SECRET_KEY": "test-secret-key",
    "WEBVIRT_ENCRYPTION_KEY": "test-encryption-key",
    "WEBVIRT_DB_PASSWORD": "test-db-password",
    "LIBVIRT_GID": "108",
}


def _compose(
    *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run scripts/setup.sh"
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    env.update(extra_env or {})
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid():
    result = _compose("config", "-q", extra_env=REQUIRED_ENV)
    assert result.returncode == 0, result.stderr


def test_compose_file_has_every_service():
    result = _compose("config", extra_env=REQUIRED_ENV)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "watcher", "console-gateway"} <= set(services)
    assert "webvirt.consoles.gateway" in services["console-gateway"]["command"]

    for name in ("web", "worker", "beat", "watcher"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://webvirt:")
        assert env["DATABASE_URL"].endswith("@postgres:5432/webvirt")
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["WEBVIRT_SECRET_KEY"] == REQUIRED_ENV["WEBVIRT_SECRET_KEY"]
    for name in ("web", "worker", "watcher"):
        assert "/var/run/libvirt:/var/run/libvirt:rw" in services[name]["volumes"]
    # An upload is kept by web and streamed into a pool by the worker: both see the same folder.
    uploads = {name: [v for v in services[name]["volumes"] if ":/var/lib/webvirt/uploads" in v]
               for name in ("web", "worker")}
    assert uploads["web"] and uploads["web"] == uploads["worker"]
    assert any(p.get("published") in (8000, "8000") for p in services["web"]["ports"])


def test_compose_file_requires_the_secret_key():
    env = {k: v for k, v in REQUIRED_ENV.items() if k != "WEBVIRT_SECRET_KEY"}
    result = _compose("config", "-q", extra_env=env)
    assert result.returncode != 0
    assert "WEBVIRT_SECRET_KEY" in result.stderr
