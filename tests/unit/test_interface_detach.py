"""Detaching a domain's network interface: through the API (DELETE /api/v1/domains/<pk>/interfaces/<mac>/)
and through the Devices panel of the domain page (POST /domains/<pk>/devices/detach-interface/).

libvirt's test driver cannot detach devices at all, so there the tests assert that the refusal is said
and nothing changes; the interface really goes away on the real libvirtd (qemu:///system), from a
shut-off domain's definition (no guest is booted).
"""

from __future__ import annotations

import libvirt
import pytest

from tests.forms import audit_entry, confirmation, csrf_client, submit, token_from
from tests.integration.conftest import guest_names, qemu_conn, qemu_host  # noqa: F401
from tests.people import api_for, unique
from tests.unit.test_error_boundary import messages_of
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.django_db(transaction=True)

MAC = "52:54:00:00:00:01"  # the interface of every test driver domain (tests.conftest.domain_xml)
FIRST, SECOND = "52:54:00:5e:00:01", "52:54:00:5e:00:02"


def interfaces_of(dom: libvirt.virDomain) -> str:
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


@pytest.fixture
def two_nics(qemu_conn, qemu_host, guest_names):  # type: ignore[no-untyped-def]  # noqa: F811
    """A shut-off QEMU domain with two interfaces on the host's network 'default': its row and libvirt domain."""
    name = unique("wvt-nic")
    guest_names.append(name)
    nics = "".join(f"<interface type='network'><mac address='{mac}'/><source network='default'/>"
                   "<model type='virtio'/></interface>" for mac in (FIRST, SECOND))
    dom = qemu_conn.defineXML(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
                              "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
                              f"<devices>{nics}</devices></domain>")
    sync_host(qemu_host)
    return Domain.objects.get(host=qemu_host, uuid=dom.UUIDString()), dom


@pytest.mark.qemu
def test_the_api_and_the_page_detach_an_interface_from_the_definition(admin, api, two_nics):
    row, dom = two_nics
    assert FIRST in interfaces_of(dom) and SECOND in interfaces_of(dom)

    response = api.delete(f"/api/v1/domains/{row.pk}/interfaces/{SECOND}/")
    assert response.status_code == 200, response.json()
    assert response.json() == {"source": "default"}
    assert SECOND not in interfaces_of(dom) and FIRST in interfaces_of(dom)
    entry = AuditEntry.objects.filter(action="domain.detach_interface").first()
    assert (entry.outcome, entry.via, entry.detail) == (AuditEntry.OK, "api", f"{SECOND} (default)")

    browser_like = csrf_client(admin)
    panel, action = f"/domains/{row.pk}/devices/", f"/domains/{row.pk}/devices/detach-interface/"
    assert confirmation(browser_like, panel, action) == f"Detach interface {FIRST} from {row.name}?"
    response = submit(browser_like, panel, action, follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/#devices", 302)]
    assert messages_of(response) == [f"Interface {FIRST} is detached from {row.name}."]
    assert "<interface" not in interfaces_of(dom)
    entry = audit_entry("domain.detach_interface")
    assert (entry.outcome, entry.detail) == (AuditEntry.OK, f"{FIRST} (default)")
    assert f'name="mac" value="{FIRST}"' not in browser_like.get(panel).content.decode()

    gone = api.delete(f"/api/v1/domains/{row.pk}/interfaces/{FIRST}/")
    assert gone.status_code == 404 and f"has no interface with MAC address {FIRST}" in gone.json()["error"]


def test_the_test_driver_cannot_detach_and_both_ways_say_so_and_change_nothing(admin, api, domain_row, test_conn):
    row = domain_row()
    dom = test_conn.lookupByUUIDString(row.uuid)
    before = dom.XMLDesc(0)
    response = api.delete(f"/api/v1/domains/{row.pk}/interfaces/{MAC}/")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"libvirt could not detach interface {MAC} from {row.name}")

    browser_like = csrf_client(admin)
    response = submit(browser_like, f"/domains/{row.pk}/devices/", f"/domains/{row.pk}/devices/detach-interface/",
                      follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/#devices", 302)]
    [said] = messages_of(response)
    assert said.startswith(f"libvirt could not detach interface {MAC} from {row.name}") and "not supported" in said
    assert dom.XMLDesc(0) == before
    assert audit_entry("domain.detach_interface").outcome == AuditEntry.FAILED


def test_only_an_administrator_detaches_and_a_stranger_finds_no_domain(domain_row, test_conn, stranger, bob):
    row = domain_row()
    Domain.objects.filter(pk=row.pk).update(owner=bob)
    dom = test_conn.lookupByUUIDString(row.uuid)
    before = dom.XMLDesc(0)
    url = f"/domains/{row.pk}/devices/detach-interface/"

    assert api_for(stranger).delete(f"/api/v1/domains/{row.pk}/interfaces/{MAC}/").status_code == 404
    client = csrf_client(stranger)
    assert client.post(url, {"csrfmiddlewaretoken": token_from(client), "mac": MAC}).status_code == 404

    owner_api = api_for(bob).delete(f"/api/v1/domains/{row.pk}/interfaces/{MAC}/")
    assert owner_api.status_code == 403
    owner = csrf_client(bob)
    assert "detach-interface" not in owner.get(f"/domains/{row.pk}/devices/").content.decode()  # not offered
    response = owner.post(url, {"csrfmiddlewaretoken": token_from(owner), "mac": MAC}, follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/#devices", 302)]
    assert messages_of(response) == ["You are not allowed to do that."]
    assert dom.XMLDesc(0) == before
    assert set(AuditEntry.objects.filter(action="domain.detach_interface").values_list("outcome", flat=True)) == {
        AuditEntry.REFUSED}
