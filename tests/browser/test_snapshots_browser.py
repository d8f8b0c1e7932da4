"""An administrator takes, reverts to and deletes snapshots on a domain's page, in a real browser.

The whole stack runs for real (uvicorn with the event socket, the watcher, a Celery worker) against a
running domain of libvirt's test driver whose disk is a qcow2 volume in a pool, so its snapshots are
internal ones, with memory. The Snapshots region must follow each job live, without reloading the page.
"""

from __future__ import annotations

import re
import uuid as uuidlib

import libvirt
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import _page_on
from tests.people import ADMIN_PASSWORD
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.browser
WORKER_STARTS_MS = 60_000  # a Celery worker starting on a slow machine, then running the first job
DEFAULT_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}$")


@pytest.fixture
def idle_page(browser, request, live_stack):  # type: ignore[no-untyped-def]
    """A page on the live stack before any worker runs, so a job waits until the test starts one."""
    yield from _page_on(browser, live_stack.url, 15_000, request)


@pytest.fixture
def start_worker(live_stack):  # type: ignore[no-untyped-def]
    """Start the Celery worker when the test says so; it is stopped after the test."""
    from tests import live

    started: list[live.Process] = []

    def start() -> None:
        started.append(live.start_worker(live_stack.log_dir))

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def snap_domain(test_conn, test_host):  # type: ignore[no-untyped-def]
    """A running test-driver domain whose only disk is a qcow2 volume in a pool, loaded in the cache."""
    tag = uuidlib.uuid4().hex[:8]
    pool = test_conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML(f"<volume><name>snapui-{tag}.qcow2</name><capacity unit='MiB'>64</capacity>"
                         "<target><format type='qcow2'/></target></volume>", 0)
    dom = test_conn.defineXML(f"""<domain type='test'><name>snapui-{tag}</name><memory unit='MiB'>128</memory>
      <vcpu>1</vcpu><os><type arch='i686'>hvm</type></os><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{vol.path()}'/>
        <target dev='vda' bus='virtio'/></disk></devices></domain>""")
    dom.create()
    sync_host(test_host)
    yield dom, Domain.objects.get(host=test_host, uuid=dom.UUIDString())
    for snap in dom.listAllSnapshots(0):
        try:
            snap.delete(0)
        except libvirt.libvirtError:
            pass
    if dom.isActive():
        dom.destroy()
    dom.undefine()
    vol.delete(0)


def log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))


def mark_page(page: Page) -> None:
    """Leave a mark in this page's window: a reload or a navigation would lose it."""
    page.evaluate("window.__snapshotsTest = true")


def still_same_page(page: Page) -> bool:
    return page.evaluate("window.__snapshotsTest === true")


def libvirt_names(dom: libvirt.virDomain) -> list[str]:
    return sorted(snap.getName() for snap in dom.listAllSnapshots(0))


def test_an_administrator_takes_reverts_to_and_deletes_snapshots(
        idle_page, start_worker, admin, snap_domain):  # type: ignore[no-untyped-def]
    page = idle_page
    dom, row = snap_domain
    log_in(page, admin.username)
    page.goto(f"/domains/{row.pk}/")
    expect(page.locator("#live-status")).to_have_text("live")
    page.get_by_role("link", name="Snapshots", exact=True).click()
    expect(page).to_have_url(re.compile(r"#snapshots$"))
    region = page.locator("#snapshots")
    expect(region).to_contain_text("No snapshots yet.")
    rows = region.locator("tr[data-snapshot]")

    # The take form is open while there are none; its name defaults to the date and time, and a
    # running domain's memory is included unless one says otherwise.
    name = region.get_by_label("Name")
    expect(name).to_be_visible()
    expect(name).to_have_value(DEFAULT_NAME)
    expect(region.get_by_label("Include memory")).to_be_checked()
    name.fill("before-upgrade")
    region.get_by_label("Description").fill("Clean install")
    region.get_by_role("button", name="Take snapshot").click()

    # No worker yet: the job waits in the region; once one starts, the new row appears live.
    expect(page.locator(".msg.success")).to_contain_text(
        f"Taking an internal snapshot of {dom.name()}, because every disk is qcow2")
    job_line = region.locator(".job-line")
    expect(job_line).to_have_count(1)
    expect(job_line.locator("[data-job-bar]")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live")
    mark_page(page)
    start_worker()
    first = rows.filter(has=page.locator("strong", has_text=re.compile("^before-upgrade$")))
    expect(first).to_be_visible(timeout=WORKER_STARTS_MS)
    expect(job_line).to_have_count(0)
    expect(first).to_contain_text("Clean install")
    expect(first).to_contain_text("running, with memory")
    expect(first).to_contain_text("internal")
    expect(first.locator(".badge")).to_have_text("current")
    assert still_same_page(page), "the Snapshots region was not refreshed live: the page was reloaded"
    assert libvirt_names(dom) == ["before-upgrade"]
    assert dom.snapshotCurrent(0).getName() == "before-upgrade"

    # A second one, below the first in the tree; the current badge moves to it.
    region.get_by_text("Take a snapshot", exact=True).click()
    region.get_by_label("Name").fill("after-upgrade")
    region.get_by_role("button", name="Take snapshot").click()
    expect(page.locator(".msg.success")).to_contain_text("Taking an internal snapshot")
    mark_page(page)
    second = rows.filter(has=page.locator("strong", has_text=re.compile("^after-upgrade$")))
    expect(second).to_be_visible()
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("before-upgrade")  # tree order: the parent first, its child below
    expect(second.locator(".badge")).to_have_text("current")
    expect(first.locator(".badge")).to_have_count(0)
    expect(region.locator(".job-line")).to_have_count(0)
    assert still_same_page(page)
    assert libvirt_names(dom) == ["after-upgrade", "before-upgrade"]
    assert dom.snapshotCurrent(0).getName() == "after-upgrade"
    assert dom.snapshotLookupByName("after-upgrade", 0).getParent(0).getName() == "before-upgrade"

    # Revert to the first: the confirmation page says what is lost, and the badge moves back.
    first.get_by_role("link", name="Revert to before-upgrade…").click()
    expect(page.locator("h1")).to_have_text(f"Revert {dom.name()} to before-upgrade?")
    card = page.locator("main .card")
    expect(card.locator("dl.facts")).to_contain_text("Clean install")
    expect(card).to_contain_text(
        f"Everything written to the disks of {dom.name()} since before-upgrade was taken is lost.")
    expect(card).to_contain_text("It is running now: what it is doing, and any work not saved in it, is lost too.")
    expect(card).to_contain_text("It comes back running, exactly where it was")
    expect(card).to_contain_text("Other snapshots are kept")
    page.get_by_role("button", name="Revert to before-upgrade").click()
    expect(page.locator(".msg.success")).to_contain_text(f"Reverting {dom.name()} to before-upgrade")
    mark_page(page)
    expect(first.locator(".badge")).to_have_text("current")
    expect(second.locator(".badge")).to_have_count(0)
    expect(region.locator(".job-line")).to_have_count(0)
    assert still_same_page(page)
    assert dom.snapshotCurrent(0).getName() == "before-upgrade"
    assert dom.isActive()  # it was taken with memory, so it comes back running
    assert libvirt_names(dom) == ["after-upgrade", "before-upgrade"]

    # Delete the second from its confirmation page: its row goes, the first stays current.
    second.get_by_role("link", name="Delete after-upgrade…").click()
    expect(page.locator("h1")).to_have_text(f"Delete snapshot after-upgrade of {dom.name()}?")
    card = page.locator("main .card")
    expect(card).to_contain_text("You can no longer go back to after-upgrade.")
    expect(card).to_contain_text(f"{dom.name()} itself, as it is now, is not changed.")
    expect(card.get_by_role("checkbox")).to_have_count(0)  # nothing below it in the tree
    page.get_by_role("button", name="Delete after-upgrade").click()
    expect(page.locator(".msg.success")).to_contain_text(f"Deleting snapshot after-upgrade of {dom.name()}")
    mark_page(page)
    expect(second).to_have_count(0)
    expect(rows).to_have_count(1)
    expect(first.locator(".badge")).to_have_text("current")
    expect(region.locator(".job-line")).to_have_count(0)
    assert still_same_page(page)
    assert libvirt_names(dom) == ["before-upgrade"]
    assert dom.snapshotCurrent(0).getName() == "before-upgrade"
