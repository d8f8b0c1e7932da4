"""An administrator's way through the domain pages in a real browser, against libvirt's test driver.

Every domain a test touches is its own (a random name, defined with `make_test_domain`); the test
driver's own running domain "test" is left alone.
"""

from __future__ import annotations

import re

import libvirt
import pytest
from playwright.sync_api import expect

from tests.conftest import TEST_URI
from tests.people import unique as unique_name
from webvirt.domains.models import Domain

pytestmark = pytest.mark.browser


def inactive_xml(dom: libvirt.virDomain) -> str:
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


@pytest.mark.browser
def test_an_administrator_adds_a_host_finds_starts_and_edits_a_domain(
        page, log_in, shot, make_test_domain, test_conn):  # type: ignore[no-untyped-def]
    name = unique_name("browser")
    dom = make_test_domain(name)
    assert not dom.isActive()
    log_in()

    # Add the test driver as a host through the form on /hosts/.
    page.goto("/hosts/")
    page.get_by_role("link", name="Add a host").click()
    page.get_by_label(re.compile(r"^Name")).fill("test driver")
    page.get_by_label("libvirt URI").fill(TEST_URI)
    page.get_by_label("Description").fill("libvirt's test driver, through the daemon")
    shot("host-form")
    page.get_by_role("button", name="Test and add").click()
    expect(page.locator(".msg.success")).to_contain_text("Host test driver is registered and answers.")
    expect(page.locator("h1")).to_contain_text("test driver")
    expect(page.locator("#host-status")).to_have_text("online")
    shot("host-detail")

    # Find the domain by searching on /domains/ (htmx replaces the table as one types).
    page.get_by_role("link", name="Domains", exact=True).click()
    expect(page.locator("tbody tr[data-domain]").first).to_be_visible()
    page.get_by_label("Search").fill(name[:12])
    row = page.locator("tbody tr[data-domain]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(name)
    expect(row.locator(".badge")).to_have_text("shut off")
    expect(page.locator("#state-counts")).to_contain_text("1 shut off")
    shot("domain-list-search")

    # Start it from the list; the page comes back with the search kept and the domain running.
    row.get_by_role("button", name="Start").click()
    expect(page.locator(".msg.success")).to_contain_text(f"Start: {name} is now running.")
    expect(page).to_have_url(re.compile(r"search="))
    expect(row.locator(".badge")).to_have_text("running")
    assert dom.isActive()
    shot("domain-list-started")

    # Open its page.
    row.get_by_role("link", name=name).click()
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator("h1 .badge")).to_have_text("running")
    expect(page.locator("#overview")).to_contain_text(dom.UUIDString())
    shot("domain-detail")

    # Edit its XML with a broken tag: the error is shown, the edit is kept, libvirt is unchanged.
    before = inactive_xml(dom)
    page.get_by_role("link", name="Edit XML").click()
    editor = page.locator("textarea[name=xml]")
    original = editor.input_value()
    assert f"<name>{name}</name>" in original
    broken = re.sub(r"</vcpu>", "</vcpus>", original, count=1)
    assert broken != original
    editor.fill(broken)
    page.get_by_role("button", name="Validate and save").click()
    error = page.locator("#xml-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not well-formed")
    expect(page.locator(".msg.error")).to_have_count(1)
    expect(page.locator("textarea[name=xml]")).to_have_value(broken)
    shot("domain-xml-error")
    assert inactive_xml(dom) == before
    assert dom.isActive()


@pytest.mark.browser
def test_an_edit_libvirt_rejects_shows_its_reason_and_changes_nothing(
        page, log_in, shot, make_test_domain, test_host):  # type: ignore[no-untyped-def]
    dom = make_test_domain(unique_name("browser-xml"))
    test_host.refresh_from_db()
    from webvirt.domains.services import sync_host

    sync_host(test_host)
    row = Domain.objects.get(uuid=dom.UUIDString())
    before = inactive_xml(dom)
    log_in()

    page.goto(f"/domains/{row.pk}/xml/")
    editor = page.locator("textarea[name=xml]")
    original = editor.input_value()
    # Well-formed XML with a value libvirt's schema does not allow.
    rejected = original.replace("<on_poweroff>destroy</on_poweroff>", "<on_poweroff>explode</on_poweroff>")
    assert rejected != original
    editor.fill(rejected)
    page.get_by_role("button", name="Validate and save").click()
    expect(page.locator("#xml-error")).to_contain_text("failed to validate")
    expect(page.locator(".msg.error")).to_have_count(1)  # said once, next to the editor
    shot("domain-xml-rejected")
    assert inactive_xml(dom) == before


@pytest.mark.browser
def test_a_destructive_action_asks_first_and_dismissing_does_nothing(
        page, log_in, make_test_domain, test_host):  # type: ignore[no-untyped-def]
    dom = make_test_domain(unique_name("browser-confirm"), start=True)
    from webvirt.domains.services import sync_host

    sync_host(test_host)
    row = Domain.objects.get(uuid=dom.UUIDString())
    log_in()
    page.goto(f"/domains/{row.pk}/")
    expect(page.locator("h1 .badge")).to_have_text("running")

    # Dismiss: the dialog names the action and the domain, and nothing is posted.
    dialogs: list[str] = []

    def dismiss(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.dismiss()

    def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", dismiss)
    posted: list[str] = []
    page.on("request", lambda req: posted.append(req.url) if req.method == "POST" else None)
    page.get_by_role("button", name="Force off").click()
    assert dom.isActive()
    expect(page.locator("h1 .badge")).to_have_text("running")

    # Accept: the action runs. It is then the first and only thing posted, and the page's only
    # message: the dismissed click posted nothing, however late it would have been.
    page.once("dialog", accept)
    page.get_by_role("button", name="Force off").click()
    expect(page.locator(".msg.success")).to_contain_text(f"Force off: {dom.name()} is now shut off.")
    expect(page.locator("h1 .badge")).to_have_text("shut off")
    assert not dom.isActive()
    assert dialogs == [f"Force off {dom.name()}? Work in the guest that is not saved may be lost."] * 2
    assert len(posted) == 1, posted
    expect(page.locator(".messages .msg")).to_have_count(1)
