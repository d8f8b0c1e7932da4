"""An administrator ticks a few domains on the list and forces them off in one go, in a real browser.

The whole stack runs for real (uvicorn with the event socket, the watcher, a Celery worker) against
libvirt's test driver. A live refresh of the table, while boxes are ticked, must keep them ticked.
"""

from __future__ import annotations

import re
import uuid as uuidlib

import libvirt
import pytest
from playwright.sync_api import expect

from tests.browser.test_snapshots_browser import WORKER_STARTS_MS, log_in, mark_page, still_same_page
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.browser


def test_ticked_domains_are_forced_off_by_one_job_with_a_line_each(
        stack_page, admin, test_host, make_test_domain, test_conn) -> None:  # type: ignore[no-untyped-def]
    page = stack_page
    tag = uuidlib.uuid4().hex[:6]
    names = [f"bulkui-{tag}-{n}" for n in range(4)]
    for name in names:
        make_test_domain(name, start=True)
    sync_host(test_host)
    log_in(page, admin.username)
    page.goto(f"/domains/?search=bulkui-{tag}")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("tr[data-domain]")).to_have_count(4)
    count = page.locator("[data-bulk-count]")
    expect(count).to_have_text("Tick domains to act on several at once.")
    expect(page.get_by_role("button", name="Force off")).to_be_disabled()

    # Ticked with the mouse and with the keyboard.
    page.get_by_label(f"Select {names[0]}").check()
    page.get_by_label(f"Select {names[1]}").check()
    page.get_by_label(f"Select {names[2]}").focus()
    page.keyboard.press("Space")
    expect(count).to_have_text("3 selected.")
    expect(page.get_by_label("Select every domain on this page")).to_have_js_property("indeterminate", True)

    # An event re-fetches the table (the fourth is paused behind the page's back): the ticks stay.
    mark_page(page)
    test_conn.lookupByName(names[3]).suspend()
    # Its Resume button comes with the re-fetched table (an event patches only the badge in place).
    expect(page.locator(f'tr:has-text("{names[3]}")').get_by_role("button", name="Resume")).to_be_visible()
    assert still_same_page(page)
    for name in names[:3]:
        expect(page.get_by_label(f"Select {name}")).to_be_checked()
    expect(page.get_by_label(f"Select {names[3]}")).not_to_be_checked()

    # Force off asks first, naming how many; the job's page then follows it to its end.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Force off").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    assert asked == ["Force off 3 machines? This cannot be undone."]
    expect(page.locator(".msg.success")).to_contain_text("Force off 3 domains: job #")
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=WORKER_STARTS_MS)
    expect(page.locator("[data-job-message]")).to_have_text("Force off: 3 of 3 done, 0 skipped, 0 failed.")
    log = page.locator("pre.code")
    for name in names[:3]:
        expect(log).to_contain_text(f"{name}: forced off; it is shut off")
    expect(log).not_to_contain_text(names[3])
    assert [bool(test_conn.lookupByName(n).isActive()) for n in names] == [False, False, False, True]
    assert test_conn.lookupByName(names[3]).state()[0] == libvirt.VIR_DOMAIN_PAUSED


def test_all_that_match_the_filter_reaches_past_the_page_shown(
        stack_page, admin, test_host, make_test_domain, test_conn) -> None:  # type: ignore[no-untyped-def]
    page = stack_page
    tag = uuidlib.uuid4().hex[:6]
    names = [f"bulkall-{tag}-{n:02}" for n in range(27)]
    for name in names:
        make_test_domain(name, start=True)
    sync_host(test_host)
    log_in(page, admin.username)
    page.goto(f"/domains/?search=bulkall-{tag}&size=25")
    expect(page.locator("tr[data-domain]")).to_have_count(25)

    page.get_by_label("Select every domain on this page").check()
    expect(page.locator("[data-bulk-count]")).to_have_text("25 selected.")
    page.get_by_role("button", name="Select all 27 that match this filter").click()
    expect(page.locator("[data-bulk-count]")).to_have_text("All 27 that match this filter are selected.")
    page.get_by_role("button", name="Suspend").click()  # not destructive: no question asked
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=WORKER_STARTS_MS)
    expect(page.locator("[data-job-message]")).to_have_text("Suspend: 27 of 27 done, 0 skipped, 0 failed.")
    assert {test_conn.lookupByName(n).state()[0] for n in names} == {libvirt.VIR_DOMAIN_PAUSED}
