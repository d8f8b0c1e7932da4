"""Fixtures for the live event tests: sockets on the real web server, Redis, and virsh."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings

from tests.conftest import TEST_URI
from tests.events.sockets import EventSocket
from webvirt.accounts.tokens import create_token
from webvirt.events.leases import lease_key


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that restart libvirtd before all others.

    A restart closes every open libvirt connection, and other directories keep some open for the
    whole session (a running guest, a qemu:///system connection); opened after the restart, they
    never notice it. (Runs after pytest-django has put the transactional tests last.)
    """
    restarting = [item for item in items if getattr(item.module, "RESTARTS_LIBVIRTD", False)]
    items[:] = restarting + [item for item in items if item not in restarting]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """A failed test's report shows the end of each live process's log (web server, watchers)."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("live_stack")
    if report.failed and stack is not None:
        for path in sorted(stack.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"{path.name} (last 40 lines)", "\n".join(lines)))
    return report


@pytest.fixture
def token_for() -> Callable:
    """The API token key of a user, as a script would send it."""
    return lambda user: create_token(user)[1]


@pytest.fixture
def event_socket(live_stack, token_for) -> Iterator[Callable[..., EventSocket]]:
    """Open /ws/events/ on the live server as a user (with a token); closed after the test."""
    sockets: list[EventSocket] = []

    def open_as(user) -> EventSocket:  # type: ignore[no-untyped-def]
        sock = EventSocket(live_stack.url, {"Authorization": f"Token {token_for(user)}"})
        sockets.append(sock)
        return sock

    yield open_as
    for sock in sockets:
        sock.close()
    # uvicorn would wait for each closed socket's consumer to finish its pending Redis read (up to 5 s
    # each, one after another) before it exits; nothing is left to check, so force the quit.
    live_stack.web.signal(signal.SIGTERM)
    time.sleep(0.2)
    live_stack.web.signal(signal.SIGINT)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def lease_holder(redis_client) -> Callable[[int], str | None]:  # type: ignore[no-untyped-def]
    """Which watcher holds a host's lease right now (None when nobody does)."""

    def holder(host_id: int) -> str | None:
        value = redis_client.get(lease_key(settings.REDIS_PREFIX, host_id))
        return value.decode() if value else None

    return holder


def virsh(*args: str, uri: str = TEST_URI) -> str:
    """Run virsh as an administrator would, outside webvirt."""
    result = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"virsh {' '.join(args)} failed: {result.stderr}"
    return result.stdout
