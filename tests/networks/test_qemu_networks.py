"""Virtual networks on the real libvirtd (qemu:///system): bridges and dnsmasq are really made.

Ranges are private (10.213.x.0/24) and never overlap `default` (192.168.122.0/24); no traffic is
sent anywhere. Every network made here is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import pytest

from tests.networks.conftest import remove_networks
from tests.people import unique

pytestmark = [pytest.mark.django_db, pytest.mark.qemu]


@pytest.fixture
def networks(qemu_conn):  # type: ignore[no-untyped-def]
    names: list[str] = []
    yield names
    remove_networks(qemu_conn, names)


def test_a_nat_network_runs_with_dnsmasq_and_takes_dhcp_hosts_live(api, qemu_host, qemu_conn, networks):
    name = unique()
    networks.append(name)
    response = api.post(f"/api/v1/hosts/{qemu_host.pk}/networks/", {
        "name": name, "mode": "nat", "ipv4": "10.213.40.1/24", "dhcp_start": "10.213.40.100",
        "dhcp_end": "10.213.40.200"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["active"] and body["bridge"].startswith("virbr") and body["leases"] == 0
    oid = body["id"]
    added = api.post(f"/api/v1/networks/{oid}/dhcp-hosts/", {"mac": "52:54:00:21:30:40", "ip": "10.213.40.10",
                                                              "name": "fixed"}, format="json")
    assert added.status_code == 200, added.json()
    net = qemu_conn.networkLookupByName(name)
    assert "10.213.40.10" in net.XMLDesc(0) and "10.213.40.10" in net.XMLDesc(1)  # live and persistent
    # An XML edit that only adds a DHCP host is applied to the running network without a restart.
    xml = api.get(f"/api/v1/networks/{oid}/xml/").json()["xml"]
    edited = xml.replace("</dhcp>", "<host mac='52:54:00:21:30:41' name='other' ip='10.213.40.11'/></dhcp>")
    saved = api.put(f"/api/v1/networks/{oid}/xml/", {"xml": edited}, format="json")
    assert saved.status_code == 200, saved.json()
    assert saved.json()["applied_live"] == ["added DHCP host 52:54:00:21:30:41 10.213.40.11"]
    assert "10.213.40.11" in net.XMLDesc(0)
    assert api.get(f"/api/v1/networks/{oid}/leases/").json() == []


def test_an_isolated_network_and_overlaps_on_the_real_host(api, qemu_host, qemu_conn, networks):
    name, clash = unique(), unique()
    networks.extend([name, clash])
    response = api.post(f"/api/v1/hosts/{qemu_host.pk}/networks/", {"name": name, "mode": "isolated",
                                                                     "ipv4": "10.213.41.1/24"}, format="json")
    assert response.status_code == 201, response.json()
    overlapping = api.post(f"/api/v1/hosts/{qemu_host.pk}/networks/", {"name": clash, "mode": "nat",
                                                                       "ipv4": "10.213.41.129/25"}, format="json")
    assert overlapping.status_code == 409 and f"network '{name}'" in overlapping.json()["error"]
    assert clash not in qemu_conn.listNetworks() + qemu_conn.listDefinedNetworks()
    assert api.delete(f"/api/v1/networks/{response.json()['id']}/").status_code == 200
    assert name not in qemu_conn.listNetworks() + qemu_conn.listDefinedNetworks()


def interface_names(conn) -> set[str]:  # type: ignore[no-untyped-def]
    return set(conn.listInterfaces() + conn.listDefinedInterfaces())


def test_host_interfaces_are_listed_and_defining_a_bridge_does_what_the_hosts_backend_can(api, qemu_host, qemu_conn):
    """libvirt's udev interface backend (Debian's) cannot define interfaces; netcf can. On either kind of
    host, what the API answers is what happened: a 400 saying why and nothing defined, or a 201 and a
    bridge that is really there (defined, not started) and removed again through the API."""
    listed = api.get(f"/api/v1/hosts/{qemu_host.pk}/interfaces/")
    assert listed.status_code == 200 and any(i["name"] == "lo" for i in listed.json())
    assert "wvtbr9" not in interface_names(qemu_conn)
    response = api.post(f"/api/v1/hosts/{qemu_host.pk}/interfaces/", {"name": "wvtbr9"}, format="json")
    made = "wvtbr9" in interface_names(qemu_conn)  # the host's own word, not the API's
    try:
        if made:  # a netcf host
            assert response.status_code == 201, response.json()
            assert (response.json()["name"], response.json()["active"]) == ("wvtbr9", False)
            assert "wvtbr9" in qemu_conn.listDefinedInterfaces()
        else:  # the udev backend
            assert response.status_code == 400, response.json()
            assert response.json()["code"] == "unsupported" and "udev" in response.json()["error"]
    finally:
        if made:
            assert api.delete(f"/api/v1/interfaces/{qemu_host.pk}:wvtbr9/").status_code == 204
    assert "wvtbr9" not in interface_names(qemu_conn)
