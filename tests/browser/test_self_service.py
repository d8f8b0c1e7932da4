"""A self-service user clones a template three times in a real browser; a real Celery worker does the work.

The whole stack runs for real: uvicorn (pages and the event socket), the event watcher and a Celery
worker, all on the test database, against libvirt's test driver through the daemon.
"""

from __future__ import annotations

import re
import uuid as uuidlib

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.browser.conftest import RESULTS
from webvirt.accounts.policy import Actor
from webvirt.catalog import services
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.browser
PASSWORD = "bob-password-1"


@pytest.fixture
def exam_template(admin, test_host, test_conn):  # type: ignore[no-untyped-def]
    """A template on the test driver, made from a shut-off domain whose disk is a qcow2 volume in a pool."""
    tag = uuidlib.uuid4().hex[:6]
    pool = test_conn.storagePoolLookupByName("default-pool")
    base = pool.createXML(f"<volume><name>exam-base-{tag}.qcow2</name><capacity unit='MiB'>64</capacity>"
                          "<target><format type='qcow2'/></target></volume>", 0)
    source = test_conn.defineXML(f"""<domain type='test'><name>exam-src-{tag}</name><memory unit='MiB'>128</memory>
      <vcpu>1</vcpu><os><type arch='i686'>hvm</type></os><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{base.path()}'/>
        <target dev='vda' bus='virtio'/></disk>
      <interface type='network'><source network='default'/></interface></devices></domain>""")
    sync_host(test_host)
    from webvirt.domains.models import Domain

    template = services.make_template(Actor(user=admin), Domain.objects.get(uuid=source.UUIDString()),
                                      services.TemplateData(name=f"exam-{tag}", description="The exam server",
                                                            os="Debian 12", max_lifetime_days=14))
    yield template
    for dom in test_conn.listAllDomains(0):
        if dom.name().startswith(f"exam-{tag}"):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith(f"exam-{tag}"):
            vol.delete(0)
    source.undefine()
    try:
        base.delete(0)
    except libvirt.libvirtError:
        pass


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Keep what the browser shows now as test-results/pages/<name>.png, for people to look at."""
    (RESULTS / "pages").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(RESULTS / "pages" / f"{name}.png"), full_page=True)


def test_a_self_service_user_clones_a_template_three_times_and_sees_them_running(
        stack_page, exam_template):  # type: ignore[no-untyped-def]
    page = stack_page
    bob = get_user_model().objects.create_user("bob", "", PASSWORD)
    exam_template.users.add(bob)

    page.goto("/accounts/login/")
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))
    expect(page.locator("td.empty")).to_contain_text("You have no machines yet")
    expect(page.locator("#live-status")).to_have_text("live")

    page.get_by_role("link", name="Templates").click()
    expect(page.locator("#templates tbody tr")).to_have_count(1)
    shot(page, "self-service-catalog")
    page.get_by_role("link", name=exam_template.name).click()
    expect(page.locator("h1")).to_contain_text(exam_template.name)
    page.get_by_label("How many").fill("3")
    expect(page.get_by_label("Name pattern")).to_have_value(f"{exam_template.name}-{{n:02}}")
    expect(page.get_by_label("Start them when they are made")).to_be_checked()
    shot(page, "self-service-clone-form")
    page.get_by_role("button", name="Clone").click()

    # The job page: the live progress bar fills as the worker reports, and links the machines.
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    bar = page.locator("[data-job-bar]")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator("[data-job-state]")).to_have_text(re.compile("succeeded"))
    expect(page.locator("#job-detail")).to_contain_text("3 of 3 clone(s) made, 3 running.")
    shot(page, "self-service-job-done")

    page.get_by_role("link", name="Domains", exact=True).click()
    rows = page.locator("tbody tr[data-domain]")
    expect(rows).to_have_count(3)
    for n in (1, 2, 3):
        row = rows.filter(has_text=f"{exam_template.name}-0{n}")
        expect(row.locator(".badge")).to_have_text("running")
        expect(row).to_contain_text("linked clone")
    shot(page, "self-service-domains")
