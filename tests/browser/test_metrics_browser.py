"""The Usage card in a real browser: a running tiny guest's graphs draw, grow live and change range.

The whole stack runs for real (uvicorn with the event socket, the event watcher collecting every
INTERVAL s) against libvirtd with QEMU (qemu:///system). The guest and its host are set up through the
live server's REST API with a token, as a script would.

- an administrator opens the guest's page: the Usage card draws its charts (uPlot canvases), and they
  grow with each sample pushed over the WebSocket, without a reload; 24h fetches that range and
  redraws; the host's page shows the host's charts, its busiest domains among them;
- the guest's owner (a self-service user) sees their domain's graphs grow live too.

Set WEBVIRT_SHOTS=<folder> to keep screenshots of the Usage cards.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import _page_on
from tests.guest.guest import make_overlay, tiny_domain_xml
from tests.integration.conftest import guest_image, guest_names, pool_dir, qemu_conn, scratch_pool, workdir  # noqa: F401
from tests.integration.test_qemu_metrics import INTERVAL, Guest, boot_tiny_guest, fast_metrics  # noqa: F401
from tests.people import ADMIN_PASSWORD
from webvirt.accounts.tokens import create_token
from webvirt.domains.models import Domain
from webvirt.metrics import store

pytestmark = [pytest.mark.browser, pytest.mark.qemu]
SHOTS = os.environ.get("WEBVIRT_SHOTS", "")
LIVE_MS = (4 * INTERVAL + 10) * 1000  # a few passes on a loaded machine
DOMAIN_CHARTS = ["cpu_percent", "memory_mib", "disk_read_bps", "disk_read_iops", "net_rx_bps"]


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.locator("#usage").screenshot(path=str(Path(SHOTS) / f"{name}.png"))


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HttpApi:
    """The live server's REST API with a token: the test's own API client would publish events from
    this thread, where sync Playwright keeps an event loop (async_to_sync refuses that)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def request(self, method: str, path: str, data: dict | None = None) -> Answer:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method, headers={
            "Authorization": f"Token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, data: dict | None = None, format: str = "json") -> Answer:
        return self.request("POST", path, data)


@pytest.fixture
def stack(fast_metrics, live_stack):  # type: ignore[no-untyped-def]  # noqa: F811
    return live_stack


@pytest.fixture
def stack_api(stack, admin) -> HttpApi:  # type: ignore[no-untyped-def]
    return HttpApi(stack.url, create_token(admin)[1])


@pytest.fixture
def host_id(stack_api: HttpApi) -> Iterator[int]:
    response = stack_api.post("/api/v1/hosts/", {"name": "local qemu", "uri": "qemu:///system"})
    assert response.status_code == 201, response.json()
    yield response.json()["id"]


@pytest.fixture
def guest(stack_api, qemu_conn, host_id, scratch_pool, guest_names, guest_image) -> Iterator[Guest]:  # type: ignore[no-untyped-def]  # noqa: F811
    running = boot_tiny_guest(stack_api, qemu_conn, host_id, scratch_pool, guest_image, guest_names, prefix="wvmb")
    yield running
    running.shell.close()


@pytest.fixture
def stack_page(browser, request, stack) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    yield from _page_on(browser, stack.url, 15_000, request)


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))


def samples_shown(page: Page) -> int:
    return int(page.locator("#usage").get_attribute("data-samples") or 0)


def points(page: Page, chart: str) -> int:
    return int(page.locator(f"#usage figure[data-chart='{chart}']").get_attribute("data-points") or 0)


def grows_live(page: Page) -> None:
    """Two samples arrive over the socket while the page stays: the counter and the CPU chart's points grow."""
    page.evaluate("() => { window.__samePage = true; }")
    expect(page.locator("#usage")).to_have_attribute("data-samples", re.compile(r"^[1-9]"), timeout=LIVE_MS)
    seen, drawn = samples_shown(page), points(page, "cpu_percent")
    page.wait_for_function(f"() => Number(document.querySelector('#usage').dataset.samples) > {seen}",
                           timeout=LIVE_MS)
    assert points(page, "cpu_percent") > drawn
    assert page.evaluate("() => window.__samePage === true"), "the page was reloaded"


def test_an_administrator_sees_the_usage_graphs_grow_live_and_change_range(  # type: ignore[no-untyped-def]
        stack_page: Page, admin, guest: Guest, host_id: int, stack_api: HttpApi, scratch_pool, guest_names,  # noqa: F811
        guest_image) -> None:  # noqa: F811
    page = stack_page
    log_in(page, admin.username, ADMIN_PASSWORD)
    page.goto(f"/domains/{guest.pk}/")
    usage = page.locator("#usage")
    expect(usage.get_by_role("heading", name=re.compile("Usage"))).to_be_visible()
    for chart in DOMAIN_CHARTS:
        expect(usage.locator(f"figure[data-chart='{chart}'] canvas")).to_have_count(1)
    expect(usage.locator("[data-range='1h']")).to_have_attribute("aria-pressed", "true")
    grows_live(page)
    # The guest's own figures are drawn: memory on the host, the balloon at its 128 MiB.
    expect(usage.locator("figure[data-chart='memory_mib']")).to_contain_text("MiB")
    guest.shell.run("while :; do :; done & echo $!")  # something to see in the CPU chart
    page.wait_for_timeout(3 * INTERVAL * 1000)
    shot(page, "domain-1h")

    # 24h reads the minute rollups (the beat task makes them; here the test does, as it would).
    store.rollup_and_prune()
    with page.expect_response(re.compile(r"/metrics/\?range=24h$")) as answer:
        usage.locator("[data-range='24h']").click()
    assert answer.value.ok
    body = answer.value.json()
    assert body["range"] == "24h" and body["step"] == 60 and body["series"]["cpu_percent"], body
    expect(usage).to_have_attribute("data-range", "24h")
    expect(usage.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    expect(usage.locator("[data-range='1h']")).to_have_attribute("aria-pressed", "false")
    for chart in DOMAIN_CHARTS:
        expect(usage.locator(f"figure[data-chart='{chart}'] canvas")).to_have_count(1)
    assert points(page, "cpu_percent") >= 1
    expect(usage.locator("[data-metrics-empty]")).to_be_hidden()
    shot(page, "domain-24h")
    assert page.evaluate("() => window.__samePage === true"), "the page was reloaded"

    # The host's page: its CPU and memory, and its busiest domains, growing live too.
    page.goto(f"/hosts/{host_id}/")
    usage = page.locator("#usage")
    for chart in ("cpu_percent", "memory_mib"):
        expect(usage.locator(f"figure[data-chart='{chart}'] canvas")).to_have_count(1)
    expect(usage.locator("figure[data-chart='top']")).to_contain_text(guest.name, timeout=LIVE_MS)
    grows_live(page)
    shot(page, "host-1h")

    # A domain that never ran has no figures: the card says so instead of drawing empty charts.
    name = f"wvmb-off-{guest.name[-8:]}"
    overlay = make_overlay(guest_image, pool_dir(scratch_pool) / f"{name}.qcow2")
    scratch_pool.refresh(0)
    guest_names.append(name)
    response = stack_api.post("/api/v1/domains/", {"host": host_id, "xml": tiny_domain_xml(name, str(overlay))})
    assert response.status_code == 201, response.json()
    page.goto(f"/domains/{response.json()['id']}/")
    expect(usage.locator("[data-metrics-empty]")).to_be_visible()
    expect(usage.locator("[data-metrics-empty]")).to_contain_text(f"every {INTERVAL} s while the domain runs")
    expect(usage.locator(".charts")).to_be_hidden()
    shot(page, "domain-empty")


def test_an_owner_sees_their_domains_graphs_grow_live(  # type: ignore[no-untyped-def]
        stack_page: Page, bob, guest: Guest) -> None:
    Domain.objects.filter(pk=guest.pk).update(owner=bob)
    page = stack_page
    log_in(page, bob.username, "bob-password-1")
    page.goto(f"/domains/{guest.pk}/")
    usage = page.locator("#usage")
    for chart in DOMAIN_CHARTS:
        expect(usage.locator(f"figure[data-chart='{chart}'] canvas")).to_have_count(1)
    grows_live(page)
    shot(page, "domain-owner")
