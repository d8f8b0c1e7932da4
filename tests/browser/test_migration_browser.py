"""An administrator migrates a running guest to another host from its page, in a real browser.

The two hosts are the ``two_hosts`` session daemons (tests/migration/daemons.py), registered through the
API; the guest is the tiny guest, running on host a, its disk a whole image (no backing file) in a's own
pool. So the pre-flight panel refuses shared storage (b does not see the disk) and copying changes (there is
no base), and says Ready for copying the disk whole. The whole stack runs for real (uvicorn with the event
socket, the watcher, a Celery worker): the job page's bar must fill live, without a reload, and the domain's
page then shows host b.

Set WEBVIRT_SHOTS=<folder> to keep screenshots of the pages on the way.
"""

from __future__ import annotations

import os
import re
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from playwright.sync_api import Page, expect

from tests.migration.conftest import two_hosts  # noqa: F401  # the session's two daemons
from tests.migration.daemons import TwoHosts
from tests.migration.test_migration_pages import remove_guest, start_guest
from tests.people import ADMIN_PASSWORD, api_for
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

pytestmark = [pytest.mark.browser, pytest.mark.qemu]
MOVE_MS = 90_000  # a worker starting, then a throttled copy of the disk and memory under emulation
BANDWIDTH_MIB_S = 16  # slow enough that the bar is seen between empty and full (~8 s in all)
SHOTS = os.environ.get("WEBVIRT_SHOTS", "")


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def guest(two_hosts: TwoHosts) -> Iterator[str]:  # noqa: F811
    name = f"migui-{uuidlib.uuid4().hex[:6]}"
    start_guest(two_hosts, name)
    yield name
    remove_guest(two_hosts, name)


@pytest.fixture
def hosts_ab(live_stack, admin, two_hosts: TwoHosts) -> Iterator[tuple[Host, Host]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """Both daemons registered as an administrator's script would: POST /api/v1/hosts/."""
    api = api_for(admin)
    made = []
    for daemon in two_hosts.hosts:
        response = api.post("/api/v1/hosts/", {"name": f"mig-{daemon.name}", "uri": daemon.uri,
                                               "migration_uri": two_hosts.MIGRATION_URI}, format="json")
        assert response.status_code == 201, response.content
        made.append(Host.objects.get(pk=response.json()["id"]))
    yield made[0], made[1]
    from webvirt.hosts.connections import manager

    for host in made:
        manager.drop(host.target().key)


def log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))


def where(two_hosts: TwoHosts, name: str) -> list[str]:  # noqa: F811
    """The hosts `name` runs on, by libvirt."""
    found = []
    for daemon in two_hosts.hosts:
        conn = daemon.open()
        try:
            if name in {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}:
                found.append(daemon.name)
        finally:
            conn.close()
    return found


# Every value the job's bar takes, as live.js patches it: proof it filled in steps, on this very page.
RECORD_BAR = """() => {
  window.__bar = [];
  window.__samePage = true;
  const seen = (bar) => window.__bar.push(Number(bar.getAttribute("aria-valuenow")));
  const watch = (bar) => new MutationObserver(() => seen(bar)).observe(bar, {attributes: true,
    attributeFilter: ["aria-valuenow"]});
  document.querySelectorAll("[data-job-bar]").forEach((bar) => { seen(bar); watch(bar); });
}"""


def test_an_administrator_migrates_a_running_guest(
        stack_page: Page, admin, guest: str, hosts_ab: tuple[Host, Host], two_hosts: TwoHosts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    page = stack_page
    a, b = hosts_ab
    row = Domain.objects.get(host=a, name=guest)
    assert row.state == "running"
    log_in(page, admin.username)

    page.goto(f"/domains/{row.pk}/")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator(".crumbs")).to_have_text("Domains / mig-a")
    page.get_by_role("link", name="Migrate…").click()
    expect(page.locator("h1")).to_have_text(f"Migrate {guest}")
    expect(page.get_by_label("Destination host")).to_have_value(str(b.pk))
    expect(page.get_by_label("Live", exact=False)).to_be_checked()

    # The panel asks again whenever a value changes; shared storage is the first choice, and wrong here.
    panel = page.locator("#preflight")
    expect(panel.locator("[data-preflight=problems]")).to_contain_text(
        "The destination does not see disk vda at")
    page.get_by_label(re.compile(r"Copy changes")).check()
    expect(panel.locator("[data-preflight=problems] li")).to_have_text(
        ["Disk vda is not a linked clone's overlay: copy all of it instead."])
    shot(page, "migrate-problems")
    page.get_by_label(re.compile(r"Copy all")).check()
    expect(panel.locator("[data-preflight=ok]")).to_contain_text("Ready")
    page.get_by_label("Bandwidth limit (MiB/s)").fill(str(BANDWIDTH_MIB_S))
    page.get_by_label("Bandwidth limit (MiB/s)").blur()
    expect(panel.locator("[data-preflight=ok]")).to_contain_text("Ready")
    shot(page, "migrate-ready")

    page.get_by_role("button", name="Migrate", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator(".msg.success")).to_have_text(f"Migrating {guest} to mig-b.")
    page.evaluate(RECORD_BAR)
    state = page.locator("[data-job-state]")
    bar = page.locator("[data-job-bar]")
    # Between empty and full, seen live: the copy is throttled, and the job reports every half second.
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^([1-9]|[1-9]\d)$"), timeout=MOVE_MS)
    expect(state).to_have_text("running")
    shot(page, "migrate-job-running")
    expect(state).to_have_text("succeeded", timeout=MOVE_MS)
    expect(bar).to_have_attribute("aria-valuenow", "100")
    message = page.locator("[data-job-message]")
    expect(message).to_have_text(re.compile(
        rf"^{guest} moved to mig-b in \d+\.\d s with \d+ ms of downtime\. Its old disks on mig-a were deleted\.$"))
    shot(page, "migrate-job-done")
    assert page.evaluate("window.__samePage === true"), "the job page was reloaded instead of updated live"
    values = page.evaluate("window.__bar")
    steps = sorted({v for v in values if 0 < v < 100})
    assert len(steps) >= 2, f"the bar did not fill in steps: {values}"
    went_back = values != sorted(values)

    # The job links to the domain, whose page now says where it runs.
    page.get_by_role("link", name=guest, exact=True).click()
    expect(page.locator(".crumbs")).to_have_text("Domains / mig-b")
    expect(page.locator("h1 .badge").first).to_have_text("running")
    assert where(two_hosts, guest) == ["b"]
    assert Domain.objects.get(pk=row.pk).host_id == b.pk  # the same row: its id, owner and history go with it
    assert (two_hosts.b.pool_dir / f"{guest}.qcow2").exists()
    assert not (two_hosts.a.pool_dir / f"{guest}.qcow2").exists()

    # Host b's evacuation page lists it now (not confirmed here).
    page.goto(f"/hosts/{b.pk}/")
    page.get_by_role("link", name="Evacuate…").click()
    expect(page.locator("h1")).to_have_text("Evacuate mig-b?")
    expect(page.locator("main li")).to_have_text([guest])
    shot(page, "evacuate")

    # The bar only ever goes forward: while disks are copied, the memory still to come is counted too.
    assert not went_back, f"the bar went back: {values}"
