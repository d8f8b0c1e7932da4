"""Reading and editing a domain's XML through the API (JSON or a raw application/xml body)."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest

from tests.conftest import domain_xml
from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db


def define(api, host, xml: str, **extra):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/domains/", {"host": host.pk, "xml": xml, **extra}, format="json")


def test_it_answers_the_domain_xml(api, domain_row):
    row = domain_row()
    response = api.get(f"/api/v1/domains/{row.pk}/xml/")
    assert response.status_code == 200
    assert f"<name>{row.name}</name>" in response.json()["xml"]
    assert f"<uuid>{row.uuid}</uuid>" in response.json()["xml"]


def test_a_valid_xml_edit_is_saved(api, domain_row, test_conn):
    row = domain_row(memory_mib=256)
    xml = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0).replace("<memory unit='KiB'>262144</memory>",
                                                                    "<memory unit='KiB'>524288</memory>")
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": xml}, format="json")
    assert response.status_code == 200
    assert "<memory unit='KiB'>524288</memory>" in response.json()["xml"]
    assert test_conn.lookupByUUIDString(row.uuid).info()[1] == 524288
    assert Domain.objects.get(pk=row.pk).memory_mib == 512
    assert AuditEntry.objects.get(action="domain.edit_xml").outcome == AuditEntry.OK


def test_an_edit_libvirt_rejects_answers_400_and_changes_nothing(api, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": before.replace("</devices>", "<bogus/></devices>")},
                       format="json")
    assert response.status_code == 400
    assert "failed to validate against schema" in response.json()["error"]
    assert test_conn.lookupByUUIDString(row.uuid).XMLDesc(0) == before
    assert AuditEntry.objects.get(action="domain.edit_xml").outcome == AuditEntry.FAILED


def test_an_edit_may_not_change_the_uuid(api, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": before.replace(row.uuid, str(uuidlib.uuid4()))},
                       format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "The edited XML has a different <uuid>. Keep the domain's own UUID."
    assert test_conn.lookupByUUIDString(row.uuid).XMLDesc(0) == before


def test_an_edit_may_not_rename_the_domain(api, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": before.replace(row.name, "renamed")}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("The edited XML renames the domain to 'renamed'.")
    assert test_conn.lookupByUUIDString(row.uuid).name() == row.name


def test_an_edit_without_a_uuid_keeps_the_domains_own(api, domain_row, test_conn):
    row = domain_row()
    xml = domain_xml(row.name, memory_mib=128).replace("<uuid>", "<!-- ").replace("</uuid>", " -->")
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": xml}, format="json")
    assert response.status_code == 200
    assert test_conn.lookupByUUIDString(row.uuid).info()[1] == 128 * 1024


def test_a_raw_xml_body_is_accepted(api, domain_row, test_conn):
    row = domain_row(vcpus=1)
    xml = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0).replace(">1</vcpu>", ">2</vcpu>")
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", xml, content_type="application/xml")
    assert response.status_code == 200
    assert test_conn.lookupByUUIDString(row.uuid).info()[3] == 2
    assert Domain.objects.get(pk=row.pk).vcpus == 2


def test_a_raw_hostile_body_is_refused(api, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    hostile = '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + before.replace(row.name, "&x;")
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", hostile, content_type="application/xml")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert test_conn.lookupByUUIDString(row.uuid).XMLDesc(0) == before


def test_the_xml_of_a_transient_domain_cannot_be_edited(api, test_host, test_conn, forget):
    name = forget(unique("trans"))
    row = define(api, test_host, domain_xml(name), transient=True).json()
    xml = api.get(f"/api/v1/domains/{row['id']}/xml/").json()["xml"]
    response = api.put(f"/api/v1/domains/{row['id']}/xml/", {"xml": xml}, format="json")
    assert response.status_code == 409
    assert "transient" in response.json()["error"]


def test_a_put_without_xml_answers_400(api, domain_row):
    row = domain_row()
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "xml: This field is required."


def test_an_edit_of_a_running_domain_answers_the_definition_it_saved(api, domain_row, test_conn):
    row = domain_row(vcpus=1, start=True)
    xml = test_conn.lookupByUUIDString(row.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    response = api.put(f"/api/v1/domains/{row.pk}/xml/", {"xml": xml.replace(">1</vcpu>", ">2</vcpu>")},
                       format="json")
    assert response.status_code == 200
    assert ">2</vcpu>" in response.json()["xml"]
    assert ">2</vcpu>" in test_conn.lookupByUUIDString(row.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert test_conn.lookupByUUIDString(row.uuid).isActive()
