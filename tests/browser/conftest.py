"""Browser tests: Playwright driving the system Chromium against pytest-django's live server.

Playwright cannot download its own browser here, so it launches /usr/bin/chromium. A failed test
leaves a screenshot in test-results/<test name>.png; `shot()` keeps screenshots of pages as the
tests walk through them (test-results/pages/), so a person can look at what the tests saw.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.people import ADMIN_PASSWORD  # typed into the real login form

# Sync Playwright runs an event loop in this thread, and Django refuses ORM calls from a thread
# with a running loop unless told this is deliberate. The tests never touch the ORM concurrently.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
# The live server and the browser talk over 127.0.0.1 only (not whatever "localhost" resolves to).
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

VIEWPORT = {"width": 1280, "height": 800}
RESULTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Remember each phase's report on the test item, so the `page` fixture knows if the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _file_name(nodeid_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid_name).strip("_")


def _page_on(browser, base_url: str, timeout_ms: int, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A fresh browser context's page; on the test's failure it is saved as test-results/<test>.png."""
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        RESULTS.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(RESULTS / f"{_file_name(request.node.name)}.png"), full_page=True)
        except Exception as exc:  # a missing screenshot must not hide the real failure
            print(f"could not save a screenshot: {exc}")
    context.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, live_server, transactional_db):  # type: ignore[no-untyped-def]
    """A browser page on Django's live server (no WebSockets)."""
    yield from _page_on(browser, live_server.url, 10_000, request)


@pytest.fixture
def stack_page(browser, request: pytest.FixtureRequest, live_stack, worker):  # type: ignore[no-untyped-def]
    """A browser page on the live stack (uvicorn, watcher) with a Celery worker running jobs."""
    yield from _page_on(browser, live_stack.url, 15_000, request)


@pytest.fixture
def shot(page) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    """Save what the browser shows now (1280x800) as test-results/pages/<name>.png."""
    folder = RESULTS / "pages"

    def take(name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))

    return take


@pytest.fixture
def log_in(page, admin) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """Log in as the administrator through the real login form."""

    def go() -> None:
        page.goto("/accounts/login/")
        page.get_by_label("User name").fill(admin.username)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/domains/"))

    return go


@pytest.fixture(autouse=True)
def _drop_host_connections(transactional_db) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Close the connections the live server opened for hosts, before the database forgets the hosts.

    The connection manager's cache slot is the host's id; SQLite reuses ids after a flush, so a
    later test's host could otherwise be handed this test's connection.
    """
    yield
    from webvirt.hosts.connections import manager
    from webvirt.hosts.models import Host

    for host in Host.objects.all():
        manager.drop(host.target().key)
