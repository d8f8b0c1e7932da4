"""Forms walked in the real browser: a volume deleted after its confirmation, a static DHCP host added
and removed, and a network interface detached from the domain page.

Volumes and networks are on libvirt's test driver; the test driver cannot detach devices, so the
interface is detached from a shut-off domain on the real libvirtd (qemu:///system).
"""

from __future__ import annotations

import libvirt
import pytest
from playwright.sync_api import expect

from tests.integration.conftest import guest_names, qemu_conn  # noqa: F401
from tests.networks.conftest import network_names  # noqa: F401
from tests.people import unique
from tests.storage.conftest import default_pool  # noqa: F401
from tests.unit.conftest import pool_volume  # noqa: F401
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.browser


def accept_and_remember(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Accept the next confirmation the page asks, remembering its question."""
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    return asked


def test_a_volume_is_deleted_once_its_confirmation_is_accepted(page, log_in, shot, default_pool,  # noqa: F811
                                                               pool_volume):  # noqa: F811
    pool, pool_oid = default_pool
    vol = pool_volume(unique() + ".img")
    name = vol.name()
    log_in()
    page.goto(f"/storage/pools/{pool_oid}/")
    page.locator(f"tr[data-volume='{name}']").get_by_role("link", name=name).click()
    expect(page.locator("h1")).to_contain_text(f"Volume {name}")
    shot("volume-detail")

    # Dismissed: nothing is posted.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_timeout(300)
    assert name in pool.listVolumes()

    asked = accept_and_remember(page)
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".msg.success")).to_have_text(f"Volume /default-pool/{name} is deleted.")
    assert asked == [f"Delete volume {name}? Its data is gone for good."]
    expect(page.locator("#volume-table")).not_to_contain_text(name)
    assert name not in pool.listVolumes()


def test_a_static_dhcp_host_is_added_and_removed(page, log_in, shot, test_conn, test_host,
                                                 network_names):  # noqa: F811
    name = network_names()
    net = test_conn.networkDefineXML(
        f"<network><name>{name}</name><forward mode='nat'/><ip address='10.213.42.1' prefix='24'>"
        "<dhcp><range start='10.213.42.100' end='10.213.42.200'/></dhcp></ip></network>")
    net.create()
    log_in()
    page.goto(f"/networks/{test_host.pk}:{net.UUIDString()}/")
    form = page.locator("#dhcp-form")
    form.get_by_label("MAC address").fill("52:54:00:42:00:05")
    form.get_by_label("IP address").fill("10.213.42.5")
    form.get_by_label("Host name").fill("web5")
    form.get_by_role("button", name="Add").click()
    expect(page.locator(".msg.success")).to_have_text("52:54:00:42:00:05 gets 10.213.42.5 from now on.")
    table = page.locator("#dhcp-hosts table")
    expect(table).to_contain_text("52:54:00:42:00:05")
    expect(table).to_contain_text("web5")
    shot("network-dhcp-host")
    assert "<host mac='52:54:00:42:00:05' name='web5' ip='10.213.42.5'/>" in net.XMLDesc(0)

    asked = accept_and_remember(page)
    table.get_by_role("button", name="Remove").click()
    expect(page.locator(".msg.success")).to_have_text("The DHCP entry for 52:54:00:42:00:05 is removed.")
    assert asked == [f"Remove the DHCP entry of 52:54:00:42:00:05 (10.213.42.5) from {name}?"]
    expect(page.locator("#dhcp-hosts table")).to_contain_text("None.")
    assert "52:54:00:42:00:05" not in net.XMLDesc(0)


@pytest.mark.qemu
def test_an_interface_is_detached_from_the_domain_page(page, log_in, shot, qemu_conn, guest_names):  # noqa: F811
    from webvirt.hosts.models import Host

    name = unique("wvt-nic")
    guest_names.append(name)
    mac = "52:54:00:5e:01:01"
    dom = qemu_conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><interface type='network'>"
        f"<mac address='{mac}'/><source network='default'/><model type='virtio'/></interface></devices></domain>")
    host = Host.objects.create(name="local qemu", uri="qemu:///system", status=Host.ONLINE)
    sync_host(host)
    row = Domain.objects.get(host=host, uuid=dom.UUIDString())
    log_in()
    page.goto(f"/domains/{row.pk}/")
    nic = page.locator("#device-table tr", has_text=mac)  # the Devices panel, loaded after the page
    expect(nic).to_be_visible()
    shot("domain-devices-interface")

    asked = accept_and_remember(page)
    nic.get_by_role("button", name="Detach").click()
    expect(page.locator(".msg.success")).to_have_text(f"Interface {mac} is detached from {name}.")
    assert asked == [f"Detach interface {mac} from {name}?"]
    expect(page.locator("#device-table")).to_be_visible()
    expect(page.locator("#device-table")).not_to_contain_text(mac)
    assert "<interface" not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
