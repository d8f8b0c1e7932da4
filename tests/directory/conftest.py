"""Fixtures for LDAP sign-in: one private slapd for the session (tests/directory/slapd.py), webvirt's
settings pointed at it, sign-ins through the real login page, and a client that checks CSRF."""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.directory.slapd import BIND_DN, BIND_PASSWORD, GROUPS, PEOPLE, SLAPADD, SLAPD, Slapd
from webvirt import kv
from webvirt.accounts.policy import Actor
from webvirt.directory import services
from webvirt.directory.models import LdapSettings
from webvirt.directory.services import LdapData

MAPPING = "students => students\nteachers => teachers"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """Debian's slapd on 127.0.0.1 with a generated configuration, a CA and a small directory."""
    missing = [tool for tool in (SLAPD, SLAPADD) if not Path(tool).exists()] + \
              [tool for tool in ("ldapmodify",) if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install the Debian packages slapd and ldap-utils "
                    "(apt-get install slapd ldap-utils, or run scripts/setup.sh) to run the LDAP tests.")
    server = Slapd.start(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


def _forget_counts() -> None:
    for key in kv.client().scan_iter(f"{settings.REDIS_PREFIX}:authfail:*"):
        kv.client().delete(key)


@pytest.fixture(autouse=True)
def _no_failure_counts() -> Iterator[None]:
    """Every failed sign-in counts towards the login throttle; each test starts with none."""
    _forget_counts()
    yield
    _forget_counts()


def directory_settings(slapd: Slapd, **changes: Any) -> LdapData:
    data = LdapData(enabled=True, server_uri=slapd.uri, bind_dn=BIND_DN, bind_password=BIND_PASSWORD,
                    user_search_base=PEOPLE, group_search_base=GROUPS, group_mapping=MAPPING,
                    admin_groups="admins", timeout=3)
    return replace(data, **changes)


@pytest.fixture
def configure(admin: Any, slapd: Slapd) -> Callable[..., LdapSettings]:
    """Save LDAP settings as the administrator would (services.save_settings), pointed at the test slapd."""

    def save(**changes: Any) -> LdapSettings:
        return services.save_settings(Actor(user=admin), directory_settings(slapd, **changes))

    return save


@pytest.fixture
def ldap_on(configure: Callable[..., LdapSettings]) -> LdapSettings:
    return configure()


def sign_in(client: Client, username: str, password: str, address: str = "127.0.0.1") -> Any:
    """The real login page, as a browser posts it."""
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in_as(client: Client) -> str | None:
    from django.contrib.auth import get_user_model

    pk = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=pk).get_username() if pk else None


def csrf_client(user: Any, page: str = "/people/ldap/") -> tuple[Client, str]:
    """A client that checks CSRF like a browser, signed in, with the token the page gives it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    html = client.get(page).content.decode()
    return client, re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]  # type: ignore[index]


def form_fields(data: LdapData) -> dict[str, Any]:
    """The settings page's form fields for `data` (checkboxes posted only when on)."""
    posted: dict[str, Any] = {}
    for name, value in vars(data).items():
        if isinstance(value, bool):
            if value:
                posted[name] = "on"
        else:
            posted[name] = str(value)
    return posted


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word: a hung directory server."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()
