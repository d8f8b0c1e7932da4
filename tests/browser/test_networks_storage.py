"""Browser test on the real libvirtd: create a network and a pool, a volume in it, and attach both to a domain.

Everything made on qemu:///system (network, bridge, pool, directory, domain) is removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid as uuidlib
from pathlib import Path

import libvirt
import pytest
from playwright.sync_api import expect

from tests.networks.conftest import remove_networks
from tests.storage.conftest import remove_pools

pytestmark = [pytest.mark.browser, pytest.mark.qemu, pytest.mark.system]


@pytest.fixture
def qemu_world():  # type: ignore[no-untyped-def]
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.fail(f"qemu:///system does not answer: {exc}")
    suffix = uuidlib.uuid4().hex[:6]
    folder = Path(tempfile.mkdtemp(prefix="webvirt-br-"))
    os.chmod(folder, 0o755)
    names = {"network": f"wvt-net-{suffix}", "pool": f"wvt-pool-{suffix}", "domain": f"wvt-dom-{suffix}"}
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{names['domain']}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features><devices/></domain>")
    yield conn, names, folder
    try:
        dom.undefine()
    except libvirt.libvirtError:
        pass
    remove_networks(conn, [names["network"]])
    remove_pools(conn, [names["pool"]])
    shutil.rmtree(folder, ignore_errors=True)
    conn.close()


def test_a_network_a_pool_and_a_volume_made_in_the_browser_are_attached_to_a_domain(page, log_in, shot, qemu_world):
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host
    from webvirt.hosts.models import Host

    conn, names, folder = qemu_world
    host = Host.objects.create(name="local qemu", uri="qemu:///system", status=Host.ONLINE)
    sync_host(host)
    log_in()

    page.goto(f"/hosts/{host.pk}/")
    page.get_by_role("link", name="Networks").click()
    page.get_by_role("link", name="New network").click()
    page.get_by_label("Name").fill(names["network"])
    page.get_by_label("Mode").select_option("isolated")
    page.get_by_label("IPv4 address").fill("10.213.50.1/24")
    page.get_by_label("DHCP from").fill("10.213.50.100")
    page.get_by_label("DHCP to").fill("10.213.50.150")
    shot("network-create")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator("#network-state")).to_have_text("running")
    shot("network-detail")
    assert conn.networkLookupByName(names["network"]).isActive()

    page.get_by_role("link", name="Storage").click()
    page.get_by_role("link", name="New pool").click()
    page.get_by_label("Name").fill(names["pool"])
    page.get_by_label("Target path").fill(str(folder / "pool"))
    page.get_by_label(re.compile("Build it first")).check()
    page.get_by_role("button", name="Create pool").click()
    expect(page.locator("#pool-state")).to_have_text("running")

    form = page.locator("#volume-form")
    form.get_by_label("Name").fill("disk1.qcow2")
    form.get_by_label("Size (MiB)").fill("16")
    form.get_by_role("button", name="Create volume").click()
    expect(page.locator("tr[data-volume='disk1.qcow2']")).to_be_visible()
    shot("pool-detail")

    domain = Domain.objects.get(host=host, name=names["domain"])
    page.goto(f"/domains/{domain.pk}/")
    disk_form = page.locator("#attach-disk-form")
    disk_form.get_by_label("Volume").select_option(f"{folder}/pool/disk1.qcow2")
    disk_form.get_by_role("button", name="Attach").click()
    expect(page.locator(".msg.success")).to_contain_text("is attached to")
    nic_form = page.locator("#attach-interface-form")
    nic_form.get_by_label("Network").select_option(names["network"])
    nic_form.get_by_role("button", name="Attach").click()
    expect(page.locator(".msg.success")).to_contain_text(f"on {names['network']}")
    expect(page.locator("#device-table")).to_contain_text("disk1.qcow2")
    shot("domain-devices")
    xml = conn.lookupByName(names["domain"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert f"{folder}/pool/disk1.qcow2" in xml and f"network='{names['network']}'" in xml
