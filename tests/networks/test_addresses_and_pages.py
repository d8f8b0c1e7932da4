"""A domain's IP addresses (marked with their source) and the network, storage and interface pages."""

from __future__ import annotations

import pytest

from webvirt.domains import addresses as services
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db


def test_a_running_domains_addresses_are_read_marked_and_cached_for_the_list(api, domain_row):
    row = domain_row(start=True)
    response = api.get(f"/api/v1/domains/{row.pk}/addresses/")
    assert response.status_code == 200
    [address] = response.json()
    assert address["sources"] == ["arp"] and address["ip"].startswith("192.168.")  # the test driver makes one up
    assert Domain.objects.get(pk=row.pk).addresses == response.json()
    listed = api.get(f"/api/v1/domains/?search={row.name}").json()["results"][0]
    assert listed["addresses"] == response.json()


def test_the_lease_refresh_keeps_agent_and_arp_addresses_of_running_domains(domain_row, test_host):
    row = domain_row(start=True)
    Domain.objects.filter(pk=row.pk).update(addresses=[{"ip": "10.1.2.3", "prefix": 24, "family": "ipv4",
                                                        "mac": "52:54:00:00:00:01", "sources": ["arp"]}])
    assert services.refresh_host_addresses(test_host) == 0  # the test driver has no leases; nothing changes
    assert Domain.objects.get(pk=row.pk).addresses[0]["ip"] == "10.1.2.3"


def test_the_pages_render_for_an_admin(admin_client, test_host, test_conn):
    net = test_conn.networkLookupByName("default").UUIDString()
    pool = test_conn.storagePoolLookupByName("default-pool").UUIDString()
    for url in (f"/networks/host/{test_host.pk}/", f"/networks/host/{test_host.pk}/new/",
                f"/networks/{test_host.pk}:{net}/", f"/networks/{test_host.pk}:{net}/xml/",
                f"/networks/host/{test_host.pk}/interfaces/", f"/networks/interfaces/{test_host.pk}:eth1/",
                f"/storage/host/{test_host.pk}/", f"/storage/host/{test_host.pk}/new/",
                f"/storage/pools/{test_host.pk}:{pool}/", f"/storage/pools/{test_host.pk}:{pool}/xml/",
                f"/storage/pools/{test_host.pk}:{pool}/delete/", f"/hosts/{test_host.pk}/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"192.168.122.1/24" in admin_client.get(f"/networks/host/{test_host.pk}/").content


def test_the_pages_are_not_found_for_a_stranger(client, stranger, test_host, test_conn):
    client.force_login(stranger)
    net = test_conn.networkLookupByName("default").UUIDString()
    assert client.get(f"/networks/host/{test_host.pk}/").status_code == 404
    assert client.get(f"/networks/{test_host.pk}:{net}/").status_code == 404
    assert client.get(f"/storage/host/{test_host.pk}/").status_code == 404


def test_a_network_is_created_with_the_form_and_a_bad_one_is_shown_again(admin_client, test_host, test_conn,
                                                                         network_names):
    name = network_names()
    bad = admin_client.post(f"/networks/host/{test_host.pk}/new/", {"name": name, "mode": "nat",
                                                                    "ipv4": "192.168.122.9/24", "start": "on"})
    assert bad.status_code == 200 and "overlaps" in bad.content.decode()
    good = admin_client.post(f"/networks/host/{test_host.pk}/new/", {"name": name, "mode": "nat",
                                                                     "ipv4": "10.213.9.1/24", "start": "on",
                                                                     "hosts": "52:54:00:01:02:03 10.213.9.5 a"})
    assert good.status_code == 302
    assert test_conn.networkLookupByName(name).isActive()
