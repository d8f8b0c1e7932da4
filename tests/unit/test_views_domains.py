"""The domain pages, through Django's test client, logged in as the administrator."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import domain_xml
from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.hosts.connections import manager

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


def cached_rows(host, prefix: str, count: int) -> None:  # type: ignore[no-untyped-def]
    Domain.objects.bulk_create(Domain(host=host, uuid=str(uuidlib.uuid4()), name=f"{prefix}-{i:03}", state="shutoff")
                               for i in range(count))


# Login ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/domains/", "/domains/1/", "/domains/new/", "/domains/1/xml/", "/hosts/",
                                 "/hosts/add/", "/audit/"])
def test_every_page_needs_a_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_login_page_is_open(client):
    assert client.get("/accounts/login/").status_code == 200


def test_logging_in_leads_to_the_domain_list(client, admin):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/domains/"
    assert response.status_code == 200


# The list ---------------------------------------------------------------------------------------

def test_the_list_shows_domains_and_its_filters(admin_client, domain_row):
    row = domain_row()
    response = admin_client.get("/domains/", {"search": row.name})
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="/domains/{row.pk}/"' in page and row.name in page
    assert 'name="search"' in page and 'name="state"' in page and 'name="host"' in page
    assert "<html" in page


def test_the_list_filters_by_state_and_host(admin_client, domain_row, hung_host):
    off, on = domain_row("off"), domain_row("on", start=True)
    response = admin_client.get("/domains/", {"state": "running", "host": on.host_id, "search": on.name})
    assert on.name in response.content.decode()
    assert off.name not in admin_client.get("/domains/", {"state": "running"}).content.decode()
    assert off.name not in admin_client.get("/domains/", {"host": hung_host.pk}).content.decode()


def test_the_list_paginates(admin_client, test_host):
    prefix = unique("page")
    cached_rows(test_host, prefix, 30)
    first = admin_client.get("/domains/", {"search": prefix, "size": 25})
    assert first.context["page"].paginator.num_pages == 2
    assert f"{prefix}-024" in first.content.decode() and f"{prefix}-025" not in first.content.decode()
    assert 'rel="next"' in first.content.decode()
    second = admin_client.get("/domains/", {"search": prefix, "size": 25, "page": 2})
    assert [d.name for d in second.context["page"]] == [f"{prefix}-{i:03}" for i in range(25, 30)]


def test_the_list_sorts(admin_client, test_host):
    prefix = unique("sort")
    cached_rows(test_host, prefix, 3)
    response = admin_client.get("/domains/", {"search": prefix, "sort": "-name"})
    assert [d.name for d in response.context["page"]] == [f"{prefix}-002", f"{prefix}-001", f"{prefix}-000"]


def test_an_htmx_request_gets_only_the_table(admin_client, domain_row):
    row = domain_row()
    response = admin_client.get("/domains/", {"search": row.name}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<table class="list">' in page and row.name in page
    assert "<html" not in page and "<body" not in page and 'class="filters"' not in page


@pytest.mark.parametrize("query", [{"page": "abc"}, {"page": "-1"}, {"page": "99999"}, {"size": "999"},
                                   {"size": "abc"}, {"state": "bogus"}, {"sort": "bogus"}, {"host": "abc"},
                                   {"host": "999999"}, {"search": "x" * 500}, {"search": "'; DROP TABLE x; --"}])
def test_bad_list_input_never_answers_500(admin_client, test_host, query):
    response = admin_client.get("/domains/", query)
    assert response.status_code == 200
    assert admin_client.get("/domains/", query, HTTP_HX_REQUEST="true").status_code == 200


def test_an_oversized_page_size_falls_back_to_50(admin_client, test_host):
    cached_rows(test_host, unique("size"), 60)
    assert admin_client.get("/domains/", {"size": "999"}).context["page"].paginator.per_page == 50


# The detail page --------------------------------------------------------------------------------

def test_the_detail_page_shows_disks_interfaces_graphics_and_xml(admin_client, domain_row):
    row = domain_row()
    response = admin_client.get(f"/domains/{row.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"/guest/{row.name}.img" in page and "hda" in page
    assert "52:54:00:00:00:01" in page and "default" in page
    assert "<td>vnc</td><td>127.0.0.1</td>" in page
    assert f"&lt;name&gt;{row.name}&lt;/name&gt;" in page
    assert 'data-action="start"' in page and 'data-action="shutdown"' not in page


def test_the_detail_page_of_a_running_domain_offers_its_actions(admin_client, domain_row):
    page = admin_client.get(f"/domains/{domain_row(start=True).pk}/").content.decode()
    for verb in ("shutdown", "reboot", "suspend", "destroy", "reset"):
        assert f'data-action="{verb}"' in page
    assert 'data-action="start"' not in page


def test_a_domain_removed_behind_webvirts_back_leads_back_to_the_list(admin_client, domain_row, test_conn):
    row = domain_row()
    test_conn.lookupByUUIDString(row.uuid).undefine()
    response = admin_client.get(f"/domains/{row.pk}/", follow=True)
    assert response.redirect_chain == [("/domains/", 302)]
    assert f"{row.name} no longer exists on testhost." in messages_of(response)
    assert not Domain.objects.filter(pk=row.pk).exists()


def test_the_detail_page_of_a_domain_on_a_silent_host_still_renders(admin_client, hung_host, monkeypatch):
    monkeypatch.setattr(manager, "open_timeout", 0.5)
    row = Domain.objects.create(host=hung_host, uuid=str(uuidlib.uuid4()), name="stranded", state="running")
    response = admin_client.get(f"/domains/{row.pk}/")
    assert response.status_code == 200
    assert f"Host {hung_host.name} did not answer within 0.5 s. Showing what webvirt last knew." in \
        response.content.decode()


def test_a_missing_domain_page_answers_404(admin_client, test_host):
    for url in ("/domains/999999/", "/domains/999999/xml/", "/domains/999999/undefine/"):
        assert admin_client.get(url).status_code == 404
    assert admin_client.post("/domains/999999/start/").status_code == 404


def test_the_stranger_gets_404_for_a_domain_and_an_empty_list(client, stranger, domain_row):
    row = domain_row()
    client.force_login(stranger)
    assert row.name not in client.get("/domains/").content.decode()
    for url in (f"/domains/{row.pk}/", f"/domains/{row.pk}/xml/", f"/domains/{row.pk}/undefine/",
                f"/domains/{row.pk}/xml/download/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/domains/{row.pk}/start/").status_code == 404


# Actions ----------------------------------------------------------------------------------------

def test_an_action_redirects_back_with_a_message_and_libvirt_agrees(admin_client, domain_row, test_conn):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/start/", follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/", 302)]
    assert messages_of(response) == [f"Start: {row.name} is now running."]
    assert test_conn.lookupByUUIDString(row.uuid).isActive()
    assert AuditEntry.objects.get(action="domain.start").via == "ui"


def test_an_action_the_state_forbids_shows_why(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/suspend/", follow=True)
    assert response.status_code == 200
    assert messages_of(response) == [f"{row.name} is shut off, so it cannot suspend. That needs it to be blocked or "
                                     "running."]


def test_an_unknown_action_shows_a_sentence_not_a_500(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/explode/", follow=True)
    assert response.status_code == 200
    assert messages_of(response)[0].startswith("'explode' is not an action webvirt knows.")


def test_actions_need_a_post(admin_client, domain_row, test_conn):
    row = domain_row()
    assert admin_client.get(f"/domains/{row.pk}/start/").status_code == 405
    assert not test_conn.lookupByUUIDString(row.uuid).isActive()


def test_an_action_returns_to_a_local_next_page_only(admin_client, domain_row):
    row = domain_row()
    back = admin_client.post(f"/domains/{row.pk}/start/", {"next": "/domains/?state=running"})
    assert back["Location"] == "/domains/?state=running"
    away = admin_client.post(f"/domains/{row.pk}/destroy/", {"next": "https://elsewhere.invalid/"})
    assert away["Location"] == f"/domains/{row.pk}/"


def test_autostart_is_switched_from_the_page(admin_client, domain_row, test_conn):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/autostart_on/", follow=True)
    assert messages_of(response) == [f"Autostart is on for {row.name}."]
    assert test_conn.lookupByUUIDString(row.uuid).autostart() == 1
    admin_client.post(f"/domains/{row.pk}/autostart_off/")
    assert test_conn.lookupByUUIDString(row.uuid).autostart() == 0


# XML editing ------------------------------------------------------------------------------------

def test_the_xml_page_shows_the_persistent_definition(admin_client, domain_row):
    row = domain_row()
    response = admin_client.get(f"/domains/{row.pk}/xml/")
    assert response.status_code == 200
    assert f"&lt;uuid&gt;{row.uuid}&lt;/uuid&gt;" in response.content.decode()


def test_a_valid_xml_edit_is_saved_from_the_page(admin_client, domain_row, test_conn):
    row = domain_row(vcpus=1)
    xml = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0).replace(">1</vcpu>", ">3</vcpu>")
    response = admin_client.post(f"/domains/{row.pk}/xml/", {"xml": xml}, follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/xml/", 302)]
    assert messages_of(response) == [f"The definition of {row.name} is saved."]
    assert test_conn.lookupByUUIDString(row.uuid).info()[3] == 3


def test_a_rejected_edit_shows_libvirts_reason_and_keeps_the_users_text(admin_client, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    edited = before.replace("</devices>", "<bogus-device/></devices>")
    response = admin_client.post(f"/domains/{row.pk}/xml/", {"xml": edited})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="xml-error"' in page and "failed to validate against schema" in page
    assert "&lt;bogus-device/&gt;&lt;/devices&gt;" in page
    assert test_conn.lookupByUUIDString(row.uuid).XMLDesc(0) == before


def test_hostile_xml_on_the_edit_page_is_refused(admin_client, domain_row, test_conn):
    row = domain_row()
    before = test_conn.lookupByUUIDString(row.uuid).XMLDesc(0)
    hostile = '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + before.replace(row.name, "&x;")
    response = admin_client.post(f"/domains/{row.pk}/xml/", {"xml": hostile})
    assert "DOCTYPE" in response.content.decode()
    assert test_conn.lookupByUUIDString(row.uuid).XMLDesc(0) == before


def test_the_xml_downloads_as_a_file(admin_client, domain_row):
    row = domain_row()
    response = admin_client.get(f"/domains/{row.pk}/xml/download/")
    assert response["Content-Type"] == "application/xml"
    assert response["Content-Disposition"] == f'attachment; filename="{row.name}.xml"'
    assert f"<name>{row.name}</name>" in response.content.decode()


# Define -----------------------------------------------------------------------------------------

def test_the_define_page_offers_the_visible_hosts(admin_client, test_host):
    response = admin_client.get("/domains/new/")
    assert response.status_code == 200
    assert f'<option value="{test_host.pk}"' in response.content.decode()
    assert 'type="file"' in response.content.decode()


def test_pasted_xml_defines_a_domain(admin_client, test_host, test_conn, forget):
    name = forget(unique("pasted"))
    response = admin_client.post("/domains/new/", {"host": test_host.pk, "xml": domain_xml(name)}, follow=True)
    row = Domain.objects.get(name=name)
    assert response.redirect_chain == [(f"/domains/{row.pk}/", 302)]
    assert messages_of(response) == [f"{name} is defined on testhost."]
    assert test_conn.lookupByName(name).isPersistent()


def test_an_uploaded_file_defines_a_domain(admin_client, test_host, test_conn, forget):
    name = forget(unique("uploaded"))
    upload = SimpleUploadedFile(f"{name}.xml", domain_xml(name).encode(), content_type="application/xml")
    response = admin_client.post("/domains/new/", {"host": test_host.pk, "xml_file": upload})
    assert response.status_code == 302
    assert test_conn.lookupByName(name).UUIDString() == Domain.objects.get(name=name).uuid


def test_a_transient_domain_is_created_running_from_the_page(admin_client, test_host, test_conn, forget):
    name = forget(unique("trans"))
    response = admin_client.post("/domains/new/", {"host": test_host.pk, "xml": domain_xml(name), "transient": "on"},
                                 follow=True)
    assert messages_of(response) == [f"{name} is created and running on testhost."]
    assert test_conn.lookupByName(name).isActive() and not test_conn.lookupByName(name).isPersistent()


def test_defining_nothing_asks_for_xml(admin_client, test_host):
    response = admin_client.post("/domains/new/", {"host": test_host.pk, "xml": "  "})
    assert response.status_code == 200
    assert "Paste the domain XML or upload an XML file." in response.content.decode()


@pytest.mark.parametrize(("xml", "phrase"), [
    ("<domain type='test'><name>x</name>", "not well-formed"),
    ('<!DOCTYPE d [<!ENTITY lol "lol">]><domain type="test"><name>&lol;</name></domain>', "DOCTYPE"),
    ("<domain type='test'><name>schema-bad</name><memory>1024</memory><devices><bogus/></devices></domain>",
     "failed to validate against schema"),
])
def test_bad_xml_on_the_define_page_shows_why_and_defines_nothing(admin_client, test_host, test_conn, xml, phrase):
    before = set(test_conn.listDefinedDomains())
    response = admin_client.post("/domains/new/", {"host": test_host.pk, "xml": xml})
    assert response.status_code == 200
    assert phrase in response.content.decode()
    assert set(test_conn.listDefinedDomains()) <= before


def test_a_name_already_taken_is_shown_on_the_define_page(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post("/domains/new/", {"host": row.host_id, "xml": domain_xml(row.name)})
    assert f"A domain named &#x27;{row.name}&#x27; already exists on this host." in response.content.decode()


def test_a_host_that_does_not_exist_is_a_form_error(admin_client, test_host):
    response = admin_client.post("/domains/new/", {"host": 999999, "xml": domain_xml("x")})
    assert response.status_code == 200
    assert response.context["form"].errors["host"]


# Undefine ---------------------------------------------------------------------------------------

def test_the_undefine_page_asks_first_and_lists_the_disks(admin_client, domain_row, test_conn):
    row = domain_row()
    response = admin_client.get(f"/domains/{row.pk}/undefine/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Undefine {row.name}?" in page and f"/guest/{row.name}.img" in page
    assert 'name="delete_volumes"' in page
    assert test_conn.lookupByUUIDString(row.uuid).isPersistent()


def test_confirming_undefines_and_deletes_the_volumes_when_asked(admin_client, domain_row, pool_volume, test_conn):
    volume = pool_volume(f"{unique('disk')}.img")
    path = volume.path()
    row = domain_row(disk=path)
    response = admin_client.post(f"/domains/{row.pk}/undefine/", {"delete_volumes": "on"}, follow=True)
    assert response.redirect_chain == [("/domains/", 302)]
    assert messages_of(response) == [f"{row.name} is undefined and 1 volume(s) deleted."]
    with pytest.raises(libvirt.libvirtError):
        test_conn.storageVolLookupByPath(path)
    assert not Domain.objects.filter(pk=row.pk).exists()


def test_undefining_a_running_domain_from_the_page_shows_why_not(admin_client, domain_row, test_conn):
    row = domain_row(start=True)
    response = admin_client.post(f"/domains/{row.pk}/undefine/")
    assert response.status_code == 200
    assert messages_of(response) == [f"{row.name} is running. Force it off before undefining it."]
    assert test_conn.lookupByUUIDString(row.uuid).isActive()
