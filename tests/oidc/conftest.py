"""A real OpenID Connect provider for the OIDC tests (tests/oidc/provider: django-oauth-toolkit), and the
way through a sign-in.

The provider runs as a subprocess on 127.0.0.1 with its own SQLite database and an RSA key generated for
this run. webvirt is asked with Django's test Client; the provider with a real HTTP session (requests),
logged in as one of its people. webvirt's backend reaches the provider's token, keys and user information
endpoints over real HTTP, as it would in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import HttpResponse
from django.test import Client

from tests.live import ROOT, free_port
from tests.oidc.provider.people import CLIENT, CLIENT_SECRET

MANAGE = ROOT / "tests" / "oidc" / "provider" / "manage.py"
CALLBACK = "http://testserver/accounts/login/oidc/callback/"  # the test Client's host
MAPPING = "class-2026 => students\nclass-2027 => students-2027\nteachers => teachers"


@dataclass
class Provider:
    url: str
    state: Path
    process: subprocess.Popen[bytes]

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/o/.well-known/openid-configuration"

    @property
    def key_pem(self) -> bytes:
        return (self.state / "key.pem").read_bytes()

    def log(self) -> str:
        return (self.state / "provider.log").read_text(errors="replace")[-4000:]

    def allow_redirect(self, uri: str) -> None:
        """Let the provider's clients send people back to `uri` too (a live server's callback)."""
        _manage(self.state, int(urlsplit(self.url).port or 0), "provider_redirect", uri)

    def set_groups(self, username: str, *groups: str) -> None:
        _manage(self.state, int(urlsplit(self.url).port or 0), "provider_groups", username, *groups)

    def session_for(self, username: str) -> requests.Session:
        """A browser-like HTTP session signed in at the provider as `username` (its login form, with CSRF)."""
        session = requests.Session()
        login = f"{self.url}/accounts/login/"
        page = session.get(login, timeout=10)
        assert page.status_code == 200, page.text
        answer = session.post(login, data={"username": username, "password": f"{username}-password",
                                           "csrfmiddlewaretoken": session.cookies["provider_csrftoken"], "next": "/o/"},
                              headers={"Referer": login}, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, f"could not sign in at the provider as {username}: {answer.text[:500]}"
        return session


def _env(state: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    return {**env, "OIDC_PROVIDER_DIR": str(state), "OIDC_PROVIDER_PORT": str(port), "PYTHONUNBUFFERED": "1"}


def _manage(state: Path, port: int, *args: str) -> None:
    done = subprocess.run([sys.executable, str(MANAGE), *args], env=_env(state, port), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def _write_key(state: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path = state / "key.pem"
    path.write_bytes(pem)
    path.chmod(0o600)


def _wait_until_up(provider: Provider, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert provider.process.poll() is None, f"the test provider exited:\n{provider.log()}"
        try:
            if requests.get(provider.discovery_url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the test provider did not answer within {timeout} s:\n{provider.log()}")


def _forget_failure_counts() -> None:
    from django.conf import settings

    from webvirt import kv

    for key in kv.client().scan_iter(f"{settings.REDIS_PREFIX}:authfail:*"):
        kv.client().delete(key)


@pytest.fixture(autouse=True)
def _no_failure_counts() -> Iterator[None]:
    """A refused sign-in counts towards the login throttle (per address: 127.0.0.1 here); these tests refuse
    several, so each starts and ends with none, and no other test is throttled because of them."""
    _forget_failure_counts()
    yield
    _forget_failure_counts()


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The test provider: migrated, set up with its clients and people, serving on a free port."""
    state = tmp_path_factory.mktemp("oidc-provider")
    _write_key(state)
    port = free_port()
    log = (state / "provider.log").open("wb")
    _manage(state, port, "migrate", "--verbosity", "0")
    _manage(state, port, "provider_setup", "--redirect-uri", CALLBACK)
    process = subprocess.Popen([sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"],
                               env=_env(state, port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    running = Provider(url=f"http://127.0.0.1:{port}", state=state, process=process)
    try:
        _wait_until_up(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def configure(admin, provider: Provider):  # type: ignore[no-untyped-def]
    """Save webvirt's OIDC settings for the test provider (its discovery document fetched for real)."""
    from webvirt.accounts.policy import Actor
    from webvirt.oidc import services

    def save(**changes: object) -> object:
        values: dict[str, object] = {
            "enabled": True, "button_label": "Sign in with the test provider",
            "discovery_url": provider.discovery_url, "client_id": CLIENT, "client_secret": CLIENT_SECRET,
            "scopes": "openid email profile", "username_claim": "preferred_username", "groups_claim": "groups",
            "group_mapping": MAPPING, "admin_groups": "staff"}
        values.update(changes)
        return services.save_settings(Actor(user=admin), services.SettingsData(**values))  # type: ignore[arg-type]

    return save


def sign_in(client: Client, browser: requests.Session, next_url: str = "/domains/") -> HttpResponse:
    """The redirect dance: webvirt's button, the provider's authorization (signed in, no consent asked),
    and back to webvirt's callback, which exchanges the code at the provider. webvirt's last answer."""
    start = client.get("/accounts/login/oidc/", {"next": next_url})
    assert start.status_code == 302, start.content[:500]
    authorize = start["Location"]
    answer = browser.get(authorize, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, f"the provider did not redirect back: {answer.status_code} {answer.text[:500]}"
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK, answer.headers["Location"]
    return client.get(f"{back.path}?{back.query}")
