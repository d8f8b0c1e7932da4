"""The network and host interface pages' forms, posted as a browser posts them: read from their page,
with the page's CSRF token. Each test asserts what changed on the test driver, what the user is told
and the audit entry."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import libvirt
import pytest

from tests.forms import audit_entry, confirmation, csrf_client, submit, token_from
from tests.unit.test_error_boundary import messages_of
from webvirt.accounts.models import AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_like(admin):  # type: ignore[no-untyped-def]
    return csrf_client(admin)


@pytest.fixture
def network(test_conn, test_host, network_names):  # type: ignore[no-untyped-def]
    """A running NAT network with IPv4 and DHCP on the test driver: (libvirt network, its id, its page)."""
    name = network_names()
    net = test_conn.networkDefineXML(
        f"<network><name>{name}</name><forward mode='nat'/><ip address='10.213.41.1' prefix='24'>"
        "<dhcp><range start='10.213.41.100' end='10.213.41.200'/></dhcp></ip></network>")
    net.create()
    oid = f"{test_host.pk}:{net.UUIDString()}"
    return net, oid, f"/networks/{oid}/"


@pytest.fixture
def bridge_name(test_conn) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A host interface name nobody else uses; the interface is removed from the test driver afterwards."""
    name = f"wvtbr{uuidlib.uuid4().hex[:6]}"
    yield name
    try:
        iface = test_conn.interfaceLookupByName(name)
    except libvirt.libvirtError:
        return
    if iface.isActive():
        iface.destroy(0)
    iface.undefine()


def test_the_network_actions_stop_start_and_autostart(browser_like, network):
    net, oid, page = network
    name = net.name()

    def act(verb: str, data: dict | None = None) -> list[str]:
        # Stop is offered twice (plain and forced): the plain one comes first on the page.
        response = submit(browser_like, page, f"/networks/{oid}/{verb}/", data, follow=True)
        assert response.redirect_chain == [(page, 302)], verb
        return messages_of(response)

    assert confirmation(browser_like, page, f"/networks/{oid}/stop/") == (
        f"Stop network {name}? Guests on it lose their connection.")
    assert act("stop") == [f"Network {name} is stopped."]
    assert not net.isActive()
    assert audit_entry("network.stop").outcome == AuditEntry.OK
    assert act("start") == [f"Network {name} is running."]
    assert net.isActive()
    assert audit_entry("network.start").outcome == AuditEntry.OK
    assert act("autostart_on") == [f"Autostart is on for network {name}."]
    assert net.autostart() == 1
    assert act("autostart_off") == [f"Autostart is off for network {name}."]
    assert net.autostart() == 0
    assert audit_entry("network.autostart_off").outcome == AuditEntry.OK


def test_a_network_is_deleted_from_its_confirmation_page(browser_like, network, test_conn, test_host):
    net, oid, _page = network
    name = net.name()
    response = submit(browser_like, f"/networks/{oid}/delete/", data={"force": "1"}, follow=True)
    assert response.redirect_chain == [(f"/networks/host/{test_host.pk}/", 302)]
    assert messages_of(response) == [f"Network {name} is deleted."]
    assert name not in test_conn.listNetworks() + test_conn.listDefinedNetworks()
    entry = audit_entry("network.delete")
    assert (entry.outcome, entry.object_id, entry.detail) == (AuditEntry.OK, oid, "forced")


def test_a_dhcp_host_is_added_and_removed_with_the_pages_forms(browser_like, network):
    net, oid, page = network
    response = submit(browser_like, page, f"/networks/{oid}/dhcp-hosts/",
                      {"mac": "52:54:00:41:00:07", "ip": "10.213.41.7", "name": "db"}, follow=True)
    assert response.redirect_chain == [(page, 302)]
    assert messages_of(response) == ["52:54:00:41:00:07 gets 10.213.41.7 from now on."]
    assert "<host mac='52:54:00:41:00:07' name='db' ip='10.213.41.7'/>" in net.XMLDesc(0)
    assert audit_entry("network.dhcp_host_add").outcome == AuditEntry.OK

    assert confirmation(browser_like, page, f"/networks/{oid}/dhcp-hosts/remove/") == (
        f"Remove the DHCP entry of 52:54:00:41:00:07 (10.213.41.7) from {net.name()}?")
    response = submit(browser_like, page, f"/networks/{oid}/dhcp-hosts/remove/", follow=True)
    assert response.redirect_chain == [(page, 302)]
    assert messages_of(response) == ["The DHCP entry for 52:54:00:41:00:07 is removed."]
    assert "52:54:00:41:00:07" not in net.XMLDesc(0)
    entry = audit_entry("network.dhcp_host_remove")
    assert (entry.outcome, entry.detail) == (AuditEntry.OK, "52:54:00:41:00:07")


def test_a_dhcp_host_outside_the_network_or_with_a_bad_mac_is_said_and_not_added(browser_like, network):
    net, oid, page = network
    before = net.XMLDesc(0)
    bad_mac = submit(browser_like, page, f"/networks/{oid}/dhcp-hosts/", {"mac": "52:54", "ip": "10.213.41.8"},
                     follow=True)
    assert bad_mac.redirect_chain == [(page, 302)]
    assert messages_of(bad_mac) == ["mac: Like 52:54:00:12:34:56."]
    outside = submit(browser_like, page, f"/networks/{oid}/dhcp-hosts/",
                     {"mac": "52:54:00:41:00:08", "ip": "10.9.9.9"}, follow=True)
    assert outside.redirect_chain == [(page, 302)]
    [said] = messages_of(outside)
    assert "10.9.9.9" in said
    assert net.XMLDesc(0) == before
    assert audit_entry("network.dhcp_host_add").outcome in (AuditEntry.FAILED, AuditEntry.REFUSED)


def test_a_host_bridge_is_defined_started_stopped_and_undefined_with_the_interface_forms(browser_like, test_conn,
                                                                                        test_host, bridge_name):
    interfaces = f"/networks/host/{test_host.pk}/interfaces/"
    response = submit(browser_like, interfaces, data={"name": bridge_name, "members": "", "stp": None,
                                                      "start": None}, follow=True)
    assert response.redirect_chain == [(interfaces, 302)]
    assert messages_of(response) == [f"Bridge {bridge_name} is defined."]
    iface = test_conn.interfaceLookupByName(bridge_name)
    assert not iface.isActive()
    assert audit_entry("interface.define").outcome == AuditEntry.OK

    oid = f"{test_host.pk}:{bridge_name}"
    page = f"/networks/interfaces/{oid}/"

    def act(verb: str, back: str) -> None:
        response = submit(browser_like, page, f"/networks/interfaces/{oid}/{verb}/", follow=True)
        assert response.redirect_chain == [(back, 302)], verb
        assert messages_of(response) == [f"Interface {bridge_name}: {verb} done."]
        entry = audit_entry(f"interface.{verb}")
        assert (entry.outcome, entry.object_id) == (AuditEntry.OK, oid)

    act("start", page)
    assert iface.isActive()
    asked = confirmation(browser_like, page, f"/networks/interfaces/{oid}/stop/")
    assert asked == f"Bring {bridge_name} down? The host may lose its network connection."
    act("stop", page)
    assert not iface.isActive()
    assert confirmation(browser_like, page, f"/networks/interfaces/{oid}/undefine/") == (
        f"Remove the definition of {bridge_name}?")
    act("undefine", interfaces)
    assert bridge_name not in test_conn.listInterfaces() + test_conn.listDefinedInterfaces()


def test_another_user_posting_a_network_form_is_not_found_and_nothing_changes(stranger, network, test_conn,
                                                                              test_host):
    net, oid, _page = network
    before = net.XMLDesc(0)
    client = csrf_client(stranger)
    token = token_from(client)  # a valid token: the refusal is the policy's, not the CSRF check's
    for url, data in ((f"/networks/{oid}/delete/", {"force": "1"}), (f"/networks/{oid}/stop/", {"force": "1"}),
                      (f"/networks/{oid}/autostart_on/", {}),
                      (f"/networks/{oid}/dhcp-hosts/", {"mac": "52:54:00:41:00:09", "ip": "10.213.41.9"}),
                      (f"/networks/{oid}/dhcp-hosts/remove/", {"mac": "52:54:00:41:00:09"}),
                      (f"/networks/interfaces/{test_host.pk}:eth1/stop/", {}),
                      (f"/networks/host/{test_host.pk}/interfaces/", {"name": "wvtnope"})):
        response = client.post(url, {"csrfmiddlewaretoken": token, **data})
        assert response.status_code == 404, url
    assert net.isActive() and net.autostart() == 0 and net.XMLDesc(0) == before
    assert test_conn.interfaceLookupByName("eth1").isActive()
    assert "wvtnope" not in test_conn.listInterfaces() + test_conn.listDefinedInterfaces()


def test_deleting_a_network_running_domains_use_is_refused_on_its_confirmation_page(browser_like, network,
                                                                                    domain_row, test_conn):
    net, oid, _page = network
    row = domain_row()
    dom = test_conn.lookupByUUIDString(row.uuid)
    test_conn.defineXML(dom.XMLDesc(0).replace("network='default'", f"network='{net.name()}'"))
    dom.create()
    response = submit(browser_like, f"/networks/{oid}/delete/", data={"force": None})
    assert response.status_code == 200  # the confirmation page again, saying why
    assert messages_of(response)[0].startswith(
        f"Running domains use network {net.name()}: {row.name}.")
    assert 'name="force"' in response.content.decode()  # ...with the way to insist
    assert net.isActive()
    assert audit_entry("network.delete").outcome != AuditEntry.OK
