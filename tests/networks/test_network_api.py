"""Virtual networks through the API on libvirt's test driver (through the daemon)."""

from __future__ import annotations

import pytest

from webvirt.accounts.models import AuditEntry

pytestmark = pytest.mark.django_db


def create(api, host, **data):  # type: ignore[no-untyped-def]
    return api.post(f"/api/v1/hosts/{host.pk}/networks/", data, format="json")


def test_it_lists_the_hosts_networks_with_their_addresses(api, test_host):
    response = api.get(f"/api/v1/hosts/{test_host.pk}/networks/")
    assert response.status_code == 200
    default = next(n for n in response.json() if n["name"] == "default")
    assert default["mode"] == "nat" and default["bridge"] == "virbr0"
    assert default["ipv4"] == ["192.168.122.1/24"]
    assert default["dhcp_ranges"] == ["192.168.122.2-192.168.122.254"]
    assert default["id"] == f"{test_host.pk}:{default['uuid']}"
    assert default["leases"] is None  # the test driver cannot list leases


def test_it_creates_an_isolated_network_from_fields_and_starts_it(api, test_host, test_conn, network_names):
    name = network_names()
    response = create(api, test_host, name=name, mode="isolated", ipv4="10.213.1.1/24", dhcp_start="10.213.1.100",
                      dhcp_end="10.213.1.150", hosts=[{"mac": "52:54:00:aa:00:01", "ip": "10.213.1.10",
                                                       "name": "web1"}])
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["active"] and body["mode"] == "isolated" and body["ipv4"] == ["10.213.1.1/24"]
    xml = test_conn.networkLookupByName(name).XMLDesc(0)
    assert "<forward" not in xml and "mac='52:54:00:aa:00:01'" in xml
    assert AuditEntry.objects.get(action="network.create").outcome == AuditEntry.OK


def test_it_creates_a_network_from_xml_without_starting_it(api, test_host, test_conn, network_names):
    name = network_names()
    xml = f"<network><name>{name}</name><ip address='10.213.2.1' prefix='24'/></network>"
    response = create(api, test_host, xml=xml, start=False)
    assert response.status_code == 201, response.json()
    assert not test_conn.networkLookupByName(name).isActive()


@pytest.mark.parametrize("fields, message", [
    ({"ipv4": "192.168.122.50/24"}, "overlaps 192.168.122.0/24, the addresses of network 'default'"),
    ({"ipv4": "10.213.3.1/24", "dhcp_start": "10.213.4.10", "dhcp_end": "10.213.4.20"},
     "is not a usable address of 10.213.3.0/24"),
    ({"ipv4": "10.213.3.1/24", "dhcp_start": "10.213.3.1", "dhcp_end": "10.213.3.20"},
     "contains the network's own address"),
    ({"ipv4": "10.213.3.1"}, "needs a prefix length"),
    ({"mode": "bridge", "bridge": "nosuchbr0"}, "The host has no interface named 'nosuchbr0'"),
])
def test_bad_input_is_refused_and_nothing_is_defined(api, test_host, test_conn, network_names, fields, message):
    name = network_names()
    response = create(api, test_host, name=name, **{"mode": "nat", **fields})
    assert response.status_code in (400, 409), response.json()
    assert message in response.json()["error"]
    assert name not in test_conn.listNetworks() + test_conn.listDefinedNetworks()


def test_stop_and_delete_are_refused_while_a_running_domain_uses_it_unless_forced(api, test_host, test_conn,
                                                                                  network_names, domain_row):
    name = network_names()
    oid = create(api, test_host, name=name, mode="nat", ipv4="10.213.5.1/24").json()["id"]
    row = domain_row(start=True)
    dom = test_conn.lookupByUUIDString(row.uuid)
    test_conn.defineXML(dom.XMLDesc(0).replace("network='default'", f"network='{name}'"))
    dom.destroy()
    dom.create()
    response = api.post(f"/api/v1/networks/{oid}/stop/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"].startswith(f"Running domains use network {name}: {row.name}.")
    assert api.delete(f"/api/v1/networks/{oid}/").status_code == 409
    assert test_conn.networkLookupByName(name).isActive()
    assert api.delete(f"/api/v1/networks/{oid}/?force=true").status_code == 200
    assert name not in test_conn.listNetworks() + test_conn.listDefinedNetworks()


def test_start_stop_and_autostart(api, test_host, test_conn, network_names):
    name = network_names()
    oid = create(api, test_host, name=name, mode="route", ipv4="10.213.6.1/24", start=False).json()["id"]
    assert api.post(f"/api/v1/networks/{oid}/start/").json()["active"] is True
    assert api.post(f"/api/v1/networks/{oid}/start/").status_code == 409
    assert api.post(f"/api/v1/networks/{oid}/autostart/", {"enabled": True}, format="json").json()["autostart"]
    assert api.post(f"/api/v1/networks/{oid}/stop/", {}, format="json").json()["active"] is False


def test_a_rejected_xml_edit_changes_nothing(api, test_host, test_conn, network_names):
    name = network_names()
    oid = create(api, test_host, name=name, mode="nat", ipv4="10.213.7.1/24").json()["id"]
    before = api.get(f"/api/v1/networks/{oid}/xml/").json()["xml"]
    bad = before.replace("</network>", "<bogus/></network>")
    response = api.put(f"/api/v1/networks/{oid}/xml/", {"xml": bad}, format="json")
    assert response.status_code == 400
    assert test_conn.networkLookupByName(name).XMLDesc(0) == before
    renamed = api.put(f"/api/v1/networks/{oid}/xml/", {"xml": before.replace(name, "other")}, format="json")
    assert renamed.status_code == 400 and "renames the network" in renamed.json()["error"]


def test_dhcp_hosts_are_added_and_removed_on_the_running_network(api, test_host, test_conn, network_names):
    name = network_names()
    oid = create(api, test_host, name=name, mode="nat", ipv4="10.213.8.1/24", dhcp_start="10.213.8.100",
                 dhcp_end="10.213.8.200").json()["id"]
    response = api.post(f"/api/v1/networks/{oid}/dhcp-hosts/", {"mac": "52:54:00:bb:00:02", "ip": "10.213.8.20",
                                                                 "name": "db"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == [{"mac": "52:54:00:bb:00:02", "ip": "10.213.8.20", "name": "db"}]
    assert "10.213.8.20" in test_conn.networkLookupByName(name).XMLDesc(0)
    outside = api.post(f"/api/v1/networks/{oid}/dhcp-hosts/", {"mac": "52:54:00:bb:00:03", "ip": "10.9.9.9"},
                       format="json")
    assert outside.status_code == 400
    assert api.delete(f"/api/v1/networks/{oid}/dhcp-hosts/?mac=52:54:00:bb:00:02").json() == []


def test_networks_do_not_exist_for_a_stranger(client, stranger, test_host, test_conn):
    client.force_login(stranger)
    uuid = test_conn.networkLookupByName("default").UUIDString()
    assert client.get(f"/api/v1/hosts/{test_host.pk}/networks/").status_code == 404
    assert client.get(f"/api/v1/networks/{test_host.pk}:{uuid}/").status_code == 404
    assert client.get(f"/api/v1/hosts/{test_host.pk}/interfaces/").status_code == 404


def test_a_malformed_or_unknown_id_is_not_found(api, test_host):
    assert api.get("/api/v1/networks/abc:def/").status_code == 404
    assert api.get(f"/api/v1/networks/{test_host.pk}:00000000-0000-0000-0000-000000000000/").status_code == 404


def test_it_lists_host_interfaces_and_defines_a_bridge_on_the_test_driver(api, test_host, test_conn):
    response = api.get(f"/api/v1/hosts/{test_host.pk}/interfaces/")
    assert response.status_code == 200
    eth1 = next(i for i in response.json() if i["name"] == "eth1")
    assert eth1["mac"] == "aa:bb:cc:dd:ee:ff" and eth1["addresses"] == ["192.168.0.5/24"]
    assert api.get(f"/api/v1/interfaces/{test_host.pk}:eth1/xml/").json()["xml"].startswith("<interface")
    created = api.post(f"/api/v1/hosts/{test_host.pk}/interfaces/", {"name": "wvtbr7"}, format="json")
    try:
        assert created.status_code == 201, created.json()
        assert created.json()["type"] == "bridge"
    finally:
        assert api.delete(f"/api/v1/interfaces/{test_host.pk}:wvtbr7/").status_code == 204
