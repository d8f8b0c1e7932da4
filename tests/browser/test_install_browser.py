"""Install from scratch in a real browser: upload an ISO into a pool, then make a machine from it.

The whole stack runs for real (uvicorn, watcher, a Celery worker) against libvirtd with QEMU. The
"ISO" is random bytes: the new machine boots nothing, but it is defined, has its disk and the ISO
in its CD-ROM drive, and runs, which is what the pages promise.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_PASSWORD, RESULTS
from tests.storage.conftest import remove_pools

pytestmark = [pytest.mark.browser, pytest.mark.qemu, pytest.mark.system]


@pytest.fixture
def qemu_pool() -> Iterator[tuple[libvirt.virConnect, str, str]]:
    """A dir pool in a scratch folder on qemu:///system, and a name for the machine; both removed after."""
    conn = libvirt.open("qemu:///system")
    tag = uuidlib.uuid4().hex[:6]
    folder = Path(tempfile.mkdtemp(prefix="webvirt-inst-"))
    os.chmod(folder, 0o755)
    pool_name, machine = f"wvt-inst-{tag}", f"wvt-inst-{tag}"
    pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>{pool_name}</name>"
                                     f"<target><path>{folder}</path></target></pool>")
    pool.create(0)
    yield conn, pool_name, machine
    try:
        dom = conn.lookupByName(machine)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass
    remove_pools(conn, [pool_name])
    shutil.rmtree(folder, ignore_errors=True)
    conn.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    (RESULTS / "pages").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(RESULTS / "pages" / f"{name}.png"), full_page=True)


def wait_for_job(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-bar]")).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator("[data-job-state]")).to_have_text(re.compile("succeeded"))


def test_an_administrator_uploads_an_iso_and_installs_a_machine_from_it(  # type: ignore[no-untyped-def]
        stack_page, admin, qemu_pool, tmp_path):
    from webvirt.domains.services import sync_host
    from webvirt.hosts.models import Host

    conn, pool_name, machine = qemu_pool
    host = Host.objects.create(name="local qemu", uri="qemu:///system", status=Host.ONLINE)
    sync_host(host)
    iso = tmp_path / "installer.iso"
    iso.write_bytes(os.urandom(2 * 1024 * 1024 + 4321))
    page = stack_page
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(admin.username)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))

    # Upload: the file goes to the web server, then a job streams it into the pool.
    page.goto(f"/install/upload/?host={host.pk}")
    page.get_by_label("Pool").select_option(pool_name)
    page.get_by_label("File").set_input_files(str(iso))
    shot(page, "install-upload-form")
    page.get_by_role("button", name="Upload").click()
    wait_for_job(page)
    shot(page, "install-upload-done")
    pool = conn.storagePoolLookupByName(pool_name)
    pool.refresh(0)
    assert pool.storageVolLookupByName("installer.iso").info()[1] == iso.stat().st_size

    # New machine: the uploaded ISO is offered; the job makes the disk, defines and starts it.
    page.goto(f"/install/new/?host={host.pk}")
    page.get_by_label("Name").fill(machine)
    page.get_by_label("Memory (MiB)").fill("64")
    page.get_by_label("Disk (GiB)").fill("0.1")
    page.get_by_label("Pool for the disk").select_option(pool_name)
    iso_path = pool.storageVolLookupByName("installer.iso").path()
    page.get_by_label("ISO").select_option(iso_path)
    # Emulation: guests hang under KVM on these machines (offered as "qemu (emulation...)" either way).
    labels = page.locator("#id_domain_type option").all_text_contents()
    page.get_by_label("Domain type").select_option(label=next(t for t in labels if t.startswith("qemu")))
    shot(page, "install-new-form")
    page.get_by_role("button", name="Create and start").click()
    wait_for_job(page)
    shot(page, "install-new-done")

    dom = conn.lookupByName(machine)
    assert dom.isActive() and iso_path in dom.XMLDesc(0)
    page.get_by_role("link", name=machine).first.click()
    expect(page.locator("h1")).to_contain_text(machine)
    expect(page.locator("h1 .badge").first).to_have_text("running")
    shot(page, "install-new-machine")
