"""People → LDAP: the settings page, for administrators only; the bind password is encrypted and never shown."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.test import Client

from tests.directory.conftest import csrf_client, directory_settings, form_fields
from tests.directory.slapd import BIND_DN, BIND_PASSWORD, Slapd, make_ca
from webvirt import crypto
from webvirt.accounts.models import AuditEntry
from webvirt.directory.models import LdapSettings

pytestmark = pytest.mark.django_db
PAGE, TEST = "/people/ldap/", "/people/ldap/test/"


def test_an_administrator_saves_the_settings_through_the_page_with_csrf(admin, slapd: Slapd):
    client, csrf = csrf_client(admin)
    fields = form_fields(directory_settings(slapd, start_tls=True, ca_certificate=slapd.ca.cert))
    assert client.post(PAGE, fields).status_code == 403  # no CSRF token: refused
    saved = client.post(PAGE, {**fields, "csrfmiddlewaretoken": csrf}, follow=True)
    html = saved.content.decode()
    assert saved.status_code == 200 and "Saved the LDAP settings. People can sign in" in html

    row = LdapSettings.load()
    assert (row.enabled, row.server_uri, row.start_tls, row.bind_dn) == (True, slapd.uri, True, BIND_DN)
    assert row.ca_certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert BIND_PASSWORD not in row.bind_password_encrypted
    assert crypto.decrypt(row.bind_password_encrypted) == BIND_PASSWORD
    stored = LdapSettings.objects.values_list().get(pk=row.pk)  # every column as the database holds it
    assert not any(BIND_PASSWORD in str(value) for value in stored)
    assert BIND_PASSWORD not in html and row.bind_password_encrypted not in html
    assert "A password is set — leave empty to keep it" in html and "Remove the stored bind password" in html
    assert '<span class="badge online">on</span>' in html

    entry = AuditEntry.objects.get(action="ldap.update")
    assert entry.outcome == AuditEntry.OK and entry.username == "alice" and entry.via == "ui"
    assert "bind password: set" in entry.detail and f"server_uri: '{slapd.uri}'" in entry.detail
    assert BIND_PASSWORD not in entry.detail and "BEGIN CERTIFICATE" not in entry.detail


def test_an_empty_password_keeps_the_stored_one_and_clear_removes_it(admin, ldap_on, slapd: Slapd):
    client, csrf = csrf_client(admin)
    kept = form_fields(directory_settings(slapd, bind_password="", timeout=4))
    assert client.post(PAGE, {**kept, "csrfmiddlewaretoken": csrf}).status_code == 302
    row = LdapSettings.load()
    assert row.timeout == 4 and row.password() == BIND_PASSWORD
    assert "bind password" not in AuditEntry.objects.filter(action="ldap.update").first().detail  # type: ignore[union-attr]

    cleared = {**kept, "clear_password": "on", "csrfmiddlewaretoken": csrf}
    assert client.post(PAGE, cleared).status_code == 302
    assert not LdapSettings.load().has_password
    assert "bind password: removed" in AuditEntry.objects.filter(action="ldap.update").first().detail  # type: ignore[union-attr]


def test_a_new_server_address_asks_for_the_password_again(admin, ldap_on, slapd: Slapd):
    client, csrf = csrf_client(admin)
    moved = form_fields(directory_settings(slapd, server_uri="ldap://127.0.0.2:389", bind_password=""))
    answer = client.post(PAGE, {**moved, "csrfmiddlewaretoken": csrf})
    assert answer.status_code == 400
    assert "Enter the bind password again when you change the server address" in answer.content.decode()
    assert LdapSettings.load().server_uri == slapd.uri
    assert AuditEntry.objects.filter(action="ldap.update", outcome=AuditEntry.FAILED).exists()


@pytest.mark.parametrize(("changes", "sentence"), [
    ({"server_uri": "http://ldap.example.org"}, "is not an LDAP address"),
    ({"server_uri": "ldaps://ldap.example.org", "start_tls": True}, "StartTLS is for ldap:// addresses"),
    ({"ca_certificate": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"},
     "The CA certificate is not a PEM certificate"),
    ({"ca_certificate": "-----BEGIN PRIVATE KEY-----\nMC4CAQA=\n-----END PRIVATE KEY-----"}, "That is a private key"),
    ({"user_filter": "(uid=bob)"}, "must contain %(user)s"),
    ({"user_filter": "(&(uid=%(user)s)"}, "is not an LDAP filter"),
    ({"user_search_base": "people"}, "is not a valid user search base"),
    ({"group_mapping": "students => students\nno arrow\nstudents => other"}, "line 2"),
    ({"group_search_base": ""}, "The group mapping needs a group search base"),
    ({"timeout": 0}, "Ensure this value is greater than or equal to 1"),
    ({"email_attribute": "mail address"}, "is not an LDAP attribute name"),
])
def test_mistakes_are_said_on_the_form_and_nothing_is_saved(admin, slapd: Slapd, changes, sentence):
    client, csrf = csrf_client(admin)
    data = replace(directory_settings(slapd), **changes)
    answer = client.post(PAGE, {**form_fields(data), "csrfmiddlewaretoken": csrf})
    html = answer.content.decode()
    assert answer.status_code == 400 and sentence in html.replace("&#x27;", "'"), html[-3000:]
    assert BIND_PASSWORD not in html  # a form shown again never carries the password back
    assert not LdapSettings.objects.exists()


def test_the_mapping_names_every_bad_line(admin, slapd: Slapd):
    client, csrf = csrf_client(admin)
    data = replace(directory_settings(slapd), group_mapping="a => b\nno arrow\n => nothing\na => c")
    html = client.post(PAGE, {**form_fields(data), "csrfmiddlewaretoken": csrf}).content.decode().replace("&#x27;", "'")
    assert "line 2" in html and "line 3" in html and "line 4: 'a' is mapped twice" in html


def test_only_administrators_reach_the_ldap_pages(client, admin, stranger):
    for path in (PAGE, TEST):
        assert client.get(path).url.startswith("/accounts/login/")
        assert client.post(path).url.startswith("/accounts/login/")
    charlie = Client()
    charlie.force_login(stranger)
    assert charlie.get(PAGE).status_code == 404 and charlie.post(PAGE, {"enabled": "on"}).status_code == 404
    assert charlie.get(TEST).status_code == 405 and charlie.post(TEST, {"server_uri": "ldap://x"}).status_code == 404
    alice = Client()
    alice.force_login(admin)
    assert alice.get(PAGE).status_code == 200 and alice.get(TEST).status_code == 405
    assert alice.post(PAGE).status_code == 400 and alice.post(TEST).status_code == 400  # empty forms: shown again
    assert not LdapSettings.objects.exists()


def test_the_page_starts_with_the_defaults_and_ldap_off(admin):
    alice = Client()
    alice.force_login(admin)
    html = alice.get(PAGE).content.decode()
    assert "<h1>LDAP sign-in</h1>" in html and '<span class="badge">off</span>' in html
    assert 'value="(uid=%(user)s)"' in html and 'value="givenName"' in html and 'value="5"' in html
    assert "Remove the stored bind password" not in html


def test_a_ca_certificate_is_kept_tidy(admin, slapd: Slapd):
    client, csrf = csrf_client(admin)
    bundle = f"\n\n{slapd.ca.cert}\n{make_ca('second').cert}  \n"
    data = directory_settings(slapd, start_tls=True, ca_certificate=bundle)
    assert client.post(PAGE, {**form_fields(data), "csrfmiddlewaretoken": csrf}).status_code == 302
    assert LdapSettings.load().ca_certificate.count("-----BEGIN CERTIFICATE-----") == 2


def test_the_ca_certificate_becomes_a_private_file_and_replaced_ones_go(settings, tmp_path, slapd: Slapd):
    import os

    from webvirt.directory import services

    settings.STATE_DIR = tmp_path
    first = services.ca_file(slapd.ca.cert)
    assert open(first).read() == slapd.ca.cert and services.ca_file(slapd.ca.cert) == first
    assert (tmp_path / "ldap").stat().st_mode & 0o777 == 0o700
    os.utime(first, (0, 0))  # replaced long ago
    second = services.ca_file(make_ca("next").cert)
    assert os.path.exists(second) and not os.path.exists(first)
