"""What a production console is expected to do: private state files, secure cookies and HSTS over HTTPS.

Settings are read once per process, so each case starts a fresh Python with its own environment and
its own state folder, under the usual umask 022 (which would make new files world-readable).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEARED = ("WEBVIRT_SECRET_KEY", "WEBVIRT_ENCRYPTION_KEY", "DATABASE_URL", "WEBVIRT_HTTPS", "WEBVIRT_TRUSTED_PROXIES",
           "WEBVIRT_HSTS_SECONDS", "WEBVIRT_HSTS_INCLUDE_SUBDOMAINS")


# Nobody else may list or read the state folder; QEMU may pass through it to the test guest's image.
STATE_MODE = 0o711


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def python(code: str, state: Path, *, setup: bool = True, **env: str) -> str:
    """Run `code` in a fresh Python with the settings (and, with `setup`, Django) loaded on the state
    folder `state`; its stdout."""
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environment.update(WEBVIRT_STATE_DIR=str(state), DJANGO_SETTINGS_MODULE="webvirt.settings", **env)
    script = f"import django\ndjango.setup()\n{code}" if setup else f"from django.conf import settings\n{code}"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr
    return result.stdout


# Private state -----------------------------------------------------------------------------------------------

# A write makes SQLite create its -wal and -shm files beside the database; they are gone when it closes.
WRITE = """
import os
from django.db import connection
connection.cursor().execute("create table t (x)")
print(settings.SECRET_KEY, settings.WEBVIRT_ENCRYPTION_KEY)
print(oct(os.stat(settings.STATE_DIR / "db.sqlite3-wal").st_mode & 0o777),
      oct(os.stat(settings.STATE_DIR / "db.sqlite3-shm").st_mode & 0o777))
"""


def test_a_new_state_folder_its_keys_and_database_are_the_owners_only(tmp_path):
    state = tmp_path / "state"
    keys, wal_modes = python(WRITE, state, setup=False).splitlines()
    assert mode(state) == STATE_MODE
    assert mode(state / "uploads") == 0o700
    for name in ("secret_key", "encryption_key", "db.sqlite3"):
        assert mode(state / name) == 0o600, name
    assert wal_modes == "0o600 0o600"
    assert [p.name for p in state.iterdir() if p.name.startswith(".")] == []  # no temporary files left behind
    # Made once: the next start reads the same keys.
    assert len(set(keys.split())) == 2
    assert python("print(settings.SECRET_KEY, settings.WEBVIRT_ENCRYPTION_KEY)", state, setup=False).strip() == keys


def test_an_existing_state_folder_and_database_are_made_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "db.sqlite3").touch(mode=0o644)
    (state / "db.sqlite3").chmod(0o644)
    (state / "secret_key").write_text("kept-as-it-is")
    python("settings.SECRET_KEY", state, setup=False)
    assert mode(state) == STATE_MODE
    assert mode(state / "db.sqlite3") == 0o600
    assert (state / "secret_key").read_text() == "kept-as-it-is"


def copy_script(name: str, root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    return Path(shutil.copy(ROOT / "scripts" / name, root / "scripts" / name))


@pytest.mark.parametrize("existing", [False, True])
def test_setup_makes_the_state_folder_private(tmp_path, existing):  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    script = copy_script("setup.sh", root)
    if existing:
        (root / ".state").mkdir(mode=0o755)
        (root / ".state").chmod(0o755)
    # A Python that does not exist stops the script right after it made .state, before any installing.
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHON": "/nonexistent/python3", "WEBVIRT_SKIP_APT": "1"},
                            preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 1 and "/nonexistent/python3 not found" in result.stderr
    assert mode(root / ".state") == STATE_MODE
    assert mode(root / ".state" / "stamps") == 0o700


def test_services_makes_the_state_folder_private(tmp_path):
    root = tmp_path / "repo"
    script = copy_script("services.sh", root)
    (root / ".state").mkdir(mode=0o755)
    (root / ".state").chmod(0o755)
    # A PATH without libvirtd stops the script right after it made .state, before it starts anything.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "mkdir", "chmod"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    result = subprocess.run([shutil.which("bash") or "/bin/bash", str(script)], capture_output=True, text=True,
                            timeout=60, env={"PATH": str(tools)}, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 1 and "libvirtd not found" in result.stderr
    assert mode(root / ".state") == STATE_MODE


# HTTPS -------------------------------------------------------------------------------------------------------

FETCH = """
import json
from django.conf import settings
from django.core.management import call_command
from django.test import Client
call_command("migrate", "oidc", verbosity=0)  # the login page reads whether OIDC sign-in is on
response = Client().get("/accounts/login/", secure={secure}, headers={headers})
print(json.dumps({{"hsts": response.headers.get("Strict-Transport-Security"),
                  "frame": response.headers.get("X-Frame-Options"),
                  "nosniff": response.headers.get("X-Content-Type-Options"),
                  "csrf_secure": bool(response.cookies["csrftoken"]["secure"]),
                  "session_secure": settings.SESSION_COOKIE_SECURE,
                  "session_httponly": settings.SESSION_COOKIE_HTTPONLY,
                  "status": response.status_code}}))
"""


def login_page(state: Path, *, secure: bool = False, headers: dict[str, str] | None = None, **env: str) -> dict:
    return json.loads(python(FETCH.format(secure=secure, headers=headers or {}), state, **env))


def test_over_https_cookies_are_secure_and_browsers_are_told_to_stay(tmp_path):
    page = login_page(tmp_path / "state", secure=True, WEBVIRT_HTTPS="1")
    assert page["status"] == 200
    assert page["hsts"] == "max-age=31536000"  # this site only: subdomains may not serve HTTPS
    assert page["csrf_secure"] is True
    assert (page["session_secure"], page["session_httponly"]) == (True, True)
    assert (page["frame"], page["nosniff"]) == ("DENY", "nosniff")


def test_a_plain_http_development_server_pins_nothing(tmp_path):
    page = login_page(tmp_path / "state", secure=False)
    assert page["status"] == 200
    assert page["hsts"] is None and page["csrf_secure"] is False and page["session_secure"] is False
    assert page["frame"] == "DENY"


def test_a_trusted_proxy_may_say_the_request_came_over_https(tmp_path):
    behind_tls = {"X-Forwarded-Proto": "https"}
    trusted = login_page(tmp_path / "state", headers=behind_tls, WEBVIRT_TRUSTED_PROXIES="127.0.0.1")
    assert trusted["hsts"] == "max-age=31536000"
    # Without configured proxies the header is anyone's word and counts for nothing.
    assert login_page(tmp_path / "state", headers=behind_tls)["hsts"] is None
