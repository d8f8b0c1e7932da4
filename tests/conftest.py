"""Fixtures every tier shares: users, API clients, and hosts on libvirt's test driver through the daemon.

The test driver at test+unix:///default keeps its state only while a connection to it is open, so
the session holds one (`test_conn`) and each test defines the domains it needs and removes them.

`make test` runs three test runs side by side (scripts/test.sh). Two of them get a libvirt daemon of
their own for the test driver (WEBVIRT_TEST_URI, `test+unix:///default?socket=...`), so that one run's
domains and events never reach the other's; the machine's own libvirtd is left to the third, which
runs every test marked `system` (and the browser tests).
"""

from __future__ import annotations

import os
import pwd
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import libvirt
import pytest
from rest_framework.test import APIClient

from tests import people

TEST_URI = os.environ.get("WEBVIRT_TEST_URI") or "test+unix:///default"
# Tests that use the machine's own libvirtd (qemu:///system) through these fixtures are marked `system`
# (pytest_itemcollected); a module that opens it itself says so with pytestmark.
SYSTEM_FIXTURES = {"qemu_conn", "qemu_host", "scratch_pool", "tiny_template", "tiny_guest", "qemu_domain"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# pytest-timeout's limit per test (pyproject.toml's `timeout` is the default for every other test):
# a hung test fails with its stacks instead of eating CI's time. Real guests boot under TCG and a
# browser waits for pages, so their tiers get more; a test that needs still more says so itself.
TIER_TIMEOUTS = {"qemu": 900, "browser": 480}


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark `system` every test using the machine's libvirtd through a fixture (before -m selects)."""
    if SYSTEM_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.system)


def virt_admin(uri: str = TEST_URI) -> list[str]:
    """The virt-admin command for the daemon behind `uri`: the machine's libvirtd, or a session daemon
    (its admin socket beside its socket), which answers only its own user."""
    sock = parse_qs(urlsplit(uri).query).get("socket", [""])[0]
    if not sock:
        return ["virt-admin"]
    admin = sock.replace("libvirt-sock", "libvirt-admin-sock")
    owner = pwd.getpwuid(os.stat(sock).st_uid).pw_name
    return ["runuser", "-u", owner, "--", "virt-admin", "-c", f"libvirtd:///session?socket={admin}"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every browser test last, and give the slow tiers their larger timeouts.

    Sync Playwright keeps an event loop running in the main thread for as long as the browser is
    open; any later test calling async_to_sync (channel layer, Django's async bridges) would fail.
    """
    for item in items:
        tiers = [seconds for marker, seconds in TIER_TIMEOUTS.items() if item.get_closest_marker(marker)]
        if tiers and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(max(tiers)))
    browser_tests = [item for item in items if item.get_closest_marker("browser")]
    items[:] = [item for item in items if not item.get_closest_marker("browser")] + browser_tests


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the SQLite test database's -wal and -shm files: Django deletes the database file at the
    end of the run, but a connection still held (webvirt/sqlitekeep.py) leaves these two in .state/."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db.get("TEST", {}).get("NAME"):
        for suffix in ("-wal", "-shm"):
            Path(f"{db['TEST']['NAME']}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """The system Chromium through Playwright (it cannot download a browser here); one per session."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install the Debian package 'chromium'."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def _test_driver() -> Iterator[dict[str, libvirt.virConnect]]:
    holder = {"conn": libvirt.open(TEST_URI)}
    yield holder
    try:
        holder["conn"].close()
    except libvirt.libvirtError:
        pass


@pytest.fixture
def test_conn(_test_driver: dict[str, libvirt.virConnect]) -> libvirt.virConnect:
    """The session's open connection to the test driver, reopened if libvirtd was restarted under it
    (tests/events restarts it); the driver then starts again from its default state."""
    try:
        _test_driver["conn"].getLibVersion()
    except libvirt.libvirtError:
        _test_driver["conn"] = libvirt.open(TEST_URI)
    return _test_driver["conn"]


def domain_xml(name: str, *, memory_mib: int = 256, vcpus: int = 1, uuid: str | None = None) -> str:
    return f"""<domain type='test'>
  <name>{name}</name>
  <uuid>{uuid or uuidlib.uuid4()}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='i686'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/guest/{name}.img'/><target dev='hda'/></disk>
    <interface type='network'><source network='default'/><mac address='52:54:00:00:00:01'/></interface>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>"""


@pytest.fixture
def make_test_domain(test_conn: libvirt.virConnect) -> Iterator[Callable[..., libvirt.virDomain]]:
    """Define domains on the shared test driver; whatever is left is removed after the test."""
    names: list[str] = []

    def make(name: str | None = None, *, start: bool = False, **kwargs) -> libvirt.virDomain:  # type: ignore[no-untyped-def]
        name = name or f"t-{uuidlib.uuid4().hex[:8]}"
        dom = test_conn.defineXML(domain_xml(name, **kwargs))
        names.append(name)
        if start:
            dom.create()
        return dom

    yield make
    for name in names:
        try:
            dom = test_conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):  # type: ignore[no-untyped-def]
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = people.FAST_HASHERS


@pytest.fixture
def admin(db):  # type: ignore[no-untyped-def]
    return people.make_admin()


@pytest.fixture
def stranger(db):  # type: ignore[no-untyped-def]
    """A logged-in user who is not an administrator (and owns nothing yet)."""
    return people.make_user("charlie")


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    """A self-service user; tests grant him templates by name."""
    return people.make_user("bob")


@pytest.fixture
def dave(db):  # type: ignore[no-untyped-def]
    """A self-service user in the group 'teachers'."""
    return people.make_user("dave", group="teachers")


@pytest.fixture
def admin_client(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin)
    return client


@pytest.fixture
def api(admin) -> APIClient:  # type: ignore[no-untyped-def]
    """An API client authenticating the way scripts do: `Authorization: Token <key>`."""
    return people.api_for(admin)


@pytest.fixture
def test_host(db, test_conn):  # type: ignore[no-untyped-def]
    """The test driver registered as a host, its domains loaded into the cache."""
    from webvirt.domains.services import sync_host
    from webvirt.hosts.models import Host

    host = Host.objects.create(name="testhost", uri=TEST_URI, status=Host.ONLINE)
    sync_host(host)
    yield host
    from webvirt.hosts.connections import manager

    manager.drop(host.target().key)


@pytest.fixture
def opened(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The URIs this process's connection manager opens connections to (cached or not), in order:
    the real libvirt connections are still made, only counted."""
    from webvirt.hosts.connections import manager

    uris: list[str] = []
    real_open = manager.open

    def counting_open(target, timeout=None):  # type: ignore[no-untyped-def]
        uris.append(target.uri)
        return real_open(target, timeout)

    monkeypatch.setattr(manager, "open", counting_open)
    return uris


@pytest.fixture(scope="session", autouse=True)
def redis_prefix():  # type: ignore[no-untyped-def]
    """This run's own Redis keys, so a development server or another run on the same Redis is not disturbed."""
    import os

    from channels.layers import channel_layers
    from django.conf import settings

    prefix = f"webvirt-test-{os.getpid()}"
    settings.REDIS_PREFIX = prefix
    settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"],
                                           "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"],
                                                      "prefix": f"{prefix}:asgi"}}}
    channel_layers.backends = {}
    from webvirt.celery import app

    settings.CELERY_TASK_DEFAULT_QUEUE = app.conf.task_default_queue = f"{prefix}:jobs"
    return prefix


@pytest.fixture
def live_stack(transactional_db, tmp_path):  # type: ignore[no-untyped-def]
    """The real web server (uvicorn, with WebSockets) and one event watcher, on the test database."""
    from tests import live

    web, url = live.start_web(tmp_path)
    watcher = live.start_watcher(tmp_path)

    class Stack:
        pass

    stack = Stack()
    stack.url, stack.web, stack.watcher, stack.log_dir = url, web, watcher, tmp_path  # type: ignore[attr-defined]
    yield stack
    watcher.stop()
    web.stop()


@pytest.fixture
def worker(live_stack):  # type: ignore[no-untyped-def]
    """A real Celery worker beside live_stack's web server and watcher, on the same database and Redis."""
    from tests import live

    process = live.start_worker(live_stack.log_dir)
    yield process
    process.stop()
