"""The Test connection button: what each failure says, in plain words, against a real slapd."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.directory.conftest import csrf_client, directory_settings, form_fields
from tests.directory.slapd import BIND_DN, BIND_PASSWORD, GROUPS, Slapd, make_ca
from webvirt.directory.models import LdapSettings

pytestmark = pytest.mark.django_db
TEST = "/people/ldap/test/"


def try_settings(admin: Any, slapd: Slapd, test_user: str = "", **changes: Any) -> tuple[bool, str]:
    """Press Test connection on the page with the settings typed in; (succeeded, what the answer says)."""
    client, csrf = csrf_client(admin)
    fields = {**form_fields(directory_settings(slapd, **changes)), "test_user": test_user, "csrfmiddlewaretoken": csrf}
    answer = client.post(TEST, fields)
    html = answer.content.decode()
    assert answer.status_code == 200, html[-2000:]
    found = re.search(r'<div class="msg (success|error)" role="\w+">(.*?)</div>\s*<p', html, re.S)
    assert found, html[-3000:]
    said = re.sub(r"</div><div>", "\n", found[2]).replace("<div>", "").replace("</div>", "")
    assert BIND_PASSWORD not in html and "Traceback" not in html
    return found[1] == "success", said.replace("&#x27;", "'").replace("&gt;", ">")


def test_a_working_directory_is_described_with_the_test_users_groups(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, "ben")
    assert ok, said
    assert said == (f"Connected to {slapd.uri} and bound as {BIND_DN}.\n"
                    "Found 3 users; ben (Ben Baker, ben@school.test) is in students, teachers → webvirt groups: "
                    "students, teachers.")
    ok, said = try_settings(admin, slapd, "cat")
    assert ok and said.endswith("cat (Cat Cole, cat@school.test) is in admins → webvirt groups: none; administrator.")
    ok, said = try_settings(admin, slapd)
    assert ok and said.endswith("Found 3 users.")
    assert not LdapSettings.objects.exists()  # testing saves nothing


def test_a_closed_port_cannot_be_reached(admin, slapd: Slapd, closed_port):
    ok, said = try_settings(admin, slapd, server_uri=f"ldap://127.0.0.1:{closed_port}")
    assert not ok and said == f"Cannot reach ldap://127.0.0.1:{closed_port}: connection refused."


def test_a_silent_server_is_given_up_on_after_the_timeout(admin, slapd: Slapd, silent_port):
    for uri, sentence in ((f"ldap://127.0.0.1:{silent_port}", "did not answer within 1 s"),
                          (f"ldaps://127.0.0.1:{silent_port}", "no answer within 1 s")):
        started = time.monotonic()
        ok, said = try_settings(admin, slapd, server_uri=uri, timeout=1)
        assert not ok and sentence in said and time.monotonic() - started < 4, said


def test_starttls_with_the_generated_ca_works_and_with_another_ca_is_not_trusted(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, "amy", start_tls=True, ca_certificate=slapd.ca.cert)
    assert ok and said.startswith(f"Connected to {slapd.uri} with StartTLS and bound as {BIND_DN}."), said
    ok, said = try_settings(admin, slapd, start_tls=True, ca_certificate=make_ca("someone else").cert)
    assert not ok and said == ("StartTLS failed: the server's certificate is not trusted by the CA you gave "
                               "(it was issued by CN=webvirt test CA).")
    ok, said = try_settings(admin, slapd, start_tls=True)  # this machine's CAs do not know the test CA
    assert not ok and said.startswith("StartTLS failed: the server's certificate is not trusted by this machine's")


def test_ldaps_with_the_generated_ca_works_and_with_another_ca_is_not_trusted(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, server_uri=slapd.ldaps_uri, ca_certificate=slapd.ca.cert)
    assert ok and said.startswith(f"Connected to {slapd.ldaps_uri} (TLS) and bound as"), said
    ok, said = try_settings(admin, slapd, server_uri=slapd.ldaps_uri, ca_certificate=make_ca("other").cert)
    assert not ok and said.startswith("TLS failed: the server's certificate is not trusted by the CA you gave"), said


def test_a_wrong_bind_password_is_refused(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, bind_password="not-the-password")
    assert not ok and said == "The bind DN or password was refused."


def test_a_missing_search_base_is_named(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, user_search_base="ou=nobody,dc=webvirt,dc=test")
    assert not ok and said.endswith("The user search base ou=nobody,dc=webvirt,dc=test does not exist.")
    ok, said = try_settings(admin, slapd, user_filter="(&(objectClass=posixAccount)(uid=%(user)s))")
    assert not ok and "Found no users under" in said


def test_an_unknown_test_user_and_a_missing_group_base(admin, slapd: Slapd):
    ok, said = try_settings(admin, slapd, "zed")
    assert ok and said.endswith("Found 3 users; nobody named zed (filter (uid=zed)).")
    ok, said = try_settings(admin, slapd, "amy", group_search_base="", group_mapping="", admin_groups="")
    assert said.endswith("amy (Amy Adams, amy@school.test) was found; no group search base is set, so their groups "
                         "are not read.")
    ok, said = try_settings(admin, slapd, "amy", group_mapping=f"cn=students,{GROUPS} => class-a")
    assert said.endswith("is in students → webvirt groups: class-a.")


def test_the_stored_password_is_used_only_for_the_address_it_was_saved_for(admin, ldap_on, slapd: Slapd):
    ok, said = try_settings(admin, slapd, bind_password="")  # empty: the stored one, same server
    assert ok, said
    other_address = slapd.uri.replace("127.0.0.1", "localhost")
    ok, said = try_settings(admin, slapd, server_uri=other_address, bind_password="")
    assert not ok and said.startswith("The server refused the bind"), said


def test_the_answer_keeps_the_form_but_never_the_password(admin, ldap_on, slapd: Slapd):
    client, csrf = csrf_client(admin)
    typed = {**form_fields(directory_settings(slapd, timeout=7)), "test_user": "amy", "csrfmiddlewaretoken": csrf}
    html = client.post(TEST, typed).content.decode()
    assert 'value="7"' in html and 'name="test_user" value="amy"' in html
    assert BIND_PASSWORD not in html and "Type the bind password again before you save" in html
    assert LdapSettings.load().timeout == 3  # the stored settings are untouched
    typed.pop("bind_password")
    assert "Type the bind password again" not in client.post(TEST, typed).content.decode()
