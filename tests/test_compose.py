"""docker-compose.yml is valid: Debian's docker-compose 1.29 checks it without a Docker engine.

scripts/setup.sh installs docker-compose, so this test never skips: a missing binary fails it.
"""

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
TLS_OVERRIDE = ROOT / "docs" / "nginx" / "compose.tls.yml"

# The variables the file requires (`${VAR:?...}`); dummy values are enough to validate it.
REQUIRED_ENV = {
    "WEBVIRT_SECRET_KEY": "test-secret-key",
    "WEBVIRT_ENCRYPTION_KEY": "test-encryption-key",
    "WEBVIRT_DB_PASSWORD": "test-db-password",
    "LIBVIRT_GID": "108",
}


def _compose(
    *args: str, extra_env: dict[str, str] | None = None, files: tuple[Path, ...] = (COMPOSE_FILE,)
) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run scripts/setup.sh"
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    env.update(extra_env or {})
    return subprocess.run(
        [exe, *(arg for f in files for arg in ("-f", str(f))), *args],
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
    # A download is written by the worker's job and handed out by whichever web container is asked.
    downloads = {name: [v for v in services[name]["volumes"] if ":/var/lib/webvirt/downloads" in v]
                 for name in ("web", "worker")}
    assert downloads["web"] and downloads["web"] == downloads["worker"]


def _config(files: tuple[Path, ...] = (COMPOSE_FILE,), **extra: str) -> dict:
    result = _compose("config", extra_env={**REQUIRED_ENV, **extra}, files=files)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """A service's bind mounts as {path in the container: path on the host}."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_only_the_proxy_publishes_a_port_and_web_scales_behind_it():
    config = _config()
    services = config["services"]
    # web has no fixed host port, so `--scale web=3` can start three; the optional console gateway
    # (a profile of its own) is the only other service with one.
    assert sorted(name for name, service in services.items() if service.get("ports")) == ["console-gateway", "proxy"]
    assert services["console-gateway"]["profiles"] == ["console-gateway"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert [p["target"] for p in proxy["ports"]] == [80]
    mounts = _mounts(proxy)
    assert mounts["/etc/nginx/conf.d/default.conf"] == str(ROOT / "docs/nginx/webvirt.conf")
    upstream = Path(mounts["/etc/nginx/conf.d/upstream.conf"]).read_text()
    # Looked up again as containers come and go (Docker's DNS), not once at start.
    assert "resolver 127.0.0.11" in upstream and re.search(r"server web:8000 [^;]*resolve", upstream)


def test_the_proxy_has_the_address_webvirt_trusts():
    config = _config()
    services = config["services"]
    address = ipaddress.ip_address(services["proxy"]["networks"]["default"]["ipv4_address"])
    ipam = config["networks"]["default"]["ipam"]["config"][0]
    assert address in ipaddress.ip_network(ipam["subnet"])
    assert address not in ipaddress.ip_network(ipam["ip_range"])  # never handed to another container
    for name in ("web", "worker", "watcher", "console-gateway"):
        assert services[name]["environment"]["WEBVIRT_TRUSTED_PROXIES"] == str(address)


def test_the_database_is_migrated_once_before_any_process_starts():
    services = _config()["services"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat", "watcher"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "migrate" not in " ".join(services[name]["command"])


def test_every_pool_fits_in_postgres_at_the_documented_scale():
    """docs/operations.md's example: 3 web, 3 watchers, 2 workers of concurrency 2, beat."""
    services = _config()["services"]
    pool = {name: int(service["environment"]["WEBVIRT_DB_POOL_SIZE"]) for name, service in services.items()
            if "WEBVIRT_DB_POOL_SIZE" in service.get("environment", {})}
    worker = services["worker"]["command"]
    concurrency = int(worker[worker.index("--concurrency") + 1])
    needed = 3 * pool["web"] + 3 * pool["watcher"] + 2 * concurrency * pool["worker"] + pool["beat"]
    max_connections = int(re.search(r"max_connections=(\d+)", " ".join(services["postgres"]["command"]))[1])
    assert needed + 3 <= max_connections - 50  # 3 for superusers; 50 for consoles, shells, the migrate run


def test_the_tls_override_serves_https_and_marks_web_secure(tmp_path):
    config = _config((COMPOSE_FILE, TLS_OVERRIDE), WEBVIRT_TLS_DIR=str(tmp_path))
    proxy = config["services"]["proxy"]
    assert sorted(p["target"] for p in proxy["ports"]) == [80, 443]
    mounts = _mounts(proxy)
    assert mounts["/etc/nginx/tls.d/webvirt.conf"] == str(ROOT / "docs/nginx/tls.conf")
    assert mounts["/etc/nginx/tls"] == str(tmp_path)
    assert config["services"]["web"]["environment"]["WEBVIRT_HTTPS"] == "1"
    # Without a certificate folder it refuses to start rather than serve HTTPS without one.
    result = _compose("config", "-q", extra_env=REQUIRED_ENV, files=(COMPOSE_FILE, TLS_OVERRIDE))
    assert result.returncode != 0 and "WEBVIRT_TLS_DIR" in result.stderr


def test_compose_file_requires_the_secret_key():
    env = {k: v for k, v in REQUIRED_ENV.items() if k != "WEBVIRT_SECRET_KEY"}
    result = _compose("config", "-q", extra_env=env)
    assert result.returncode != 0
    assert "WEBVIRT_SECRET_KEY" in result.stderr
