"""Signing in with a directory account through the real login page, against a real slapd."""

from __future__ import annotations

import logging
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.directory.conftest import sign_in, signed_in_as
from tests.directory.slapd import GROUPS, PEOPLE, POSIX_GROUPS, ROOT_DN, ROOT_PASSWORD, Slapd, password_of
from webvirt.accounts.models import AuditEntry
from webvirt.directory.models import LdapSettings

pytestmark = pytest.mark.django_db
WRONG = "Your user name and password didn't match"
User = get_user_model()


def groups_of(username: str) -> list[str]:
    return sorted(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_the_first_sign_in_creates_the_user_with_name_email_and_mapped_groups(client, ldap_on):
    answer = sign_in(client, "amy", password_of("amy"))
    assert answer.status_code == 302 and signed_in_as(client) == "amy"
    amy = User.objects.get(username="amy")
    assert (amy.first_name, amy.last_name, amy.email) == ("Amy", "Adams", "amy@school.test")
    assert not amy.has_usable_password() and not amy.is_staff
    assert groups_of("amy") == ["students"]
    created = AuditEntry.objects.get(action="user.create", object_repr="amy")
    assert created.via == "ldap" and created.outcome == AuditEntry.OK and f"uid=amy,{PEOPLE}" in created.detail
    assert created.address == "127.0.0.1"
    assert AuditEntry.objects.filter(action="user.groups_synced", via="ldap", username="amy").exists()

    # The second sign-in finds the same account: nothing new is created.
    client.logout()
    assert sign_in(client, "AMY", password_of("amy")).status_code == 302 and signed_in_as(client) == "amy"
    assert User.objects.filter(username__iexact="amy").count() == 1
    assert AuditEntry.objects.filter(action="user.create").count() == 1
    # Signed in through LDAP, the user reaches the pages every user reaches.
    assert client.get("/domains/").status_code == 200


def test_groups_map_to_webvirt_groups_and_administrators(client, ldap_on):
    assert sign_in(client, "ben", password_of("ben")).status_code == 302
    assert groups_of("ben") == ["students", "teachers"]
    assert not User.objects.get(username="ben").is_staff

    other = Client()
    assert sign_in(other, "cat", password_of("cat")).status_code == 302
    cat = User.objects.get(username="cat")
    assert cat.is_staff and cat.is_superuser and groups_of("cat") == []  # admins is not mapped to a group
    assert other.get("/people/ldap/").status_code == 200  # an administrator's page
    assert client.get("/people/ldap/").status_code == 404  # ben is not one


def test_groups_are_read_again_at_the_next_sign_in(client, ldap_on, slapd: Slapd):
    assert sign_in(client, "ben", password_of("ben")).status_code == 302
    assert groups_of("ben") == ["students", "teachers"]
    ben, students, admins = f"uid=ben,{PEOPLE}", f"cn=students,{GROUPS}", f"cn=admins,{GROUPS}"
    # The directory changes (with ldapmodify, as its administrator would): ben leaves students, joins admins.
    modify(slapd, f"dn: {students}\nchangetype: modify\ndelete: member\nmember: {ben}\n\n"
                  f"dn: {admins}\nchangetype: modify\nadd: member\nmember: {ben}\n")
    try:
        client.logout()
        assert sign_in(client, "ben", password_of("ben")).status_code == 302
        assert groups_of("ben") == ["teachers"]
        assert User.objects.get(username="ben").is_superuser
        synced = AuditEntry.objects.filter(action="user.groups_synced", username="ben").first()
        assert synced is not None and "removed from students" in synced.detail and "administrator: yes" in synced.detail
    finally:
        modify(slapd, f"dn: {students}\nchangetype: modify\nadd: member\nmember: {ben}\n\n"
                      f"dn: {admins}\nchangetype: modify\ndelete: member\nmember: {ben}\n")


def modify(slapd: Slapd, ldif: str) -> None:
    subprocess.run(["ldapmodify", "-x", "-H", slapd.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                   input=ldif.encode(), check=True, capture_output=True, timeout=30)


def test_a_wrong_password_is_the_ordinary_error_and_creates_nobody(client, ldap_on):
    answer = sign_in(client, "amy", "not-her-password")
    assert answer.status_code == 200 and WRONG in answer.content.decode()
    assert signed_in_as(client) is None and not User.objects.filter(username="amy").exists()
    assert sign_in(client, "nobody-here", "whatever-1").status_code == 200
    assert LdapSettings.load().last_problem == ""  # wrong passwords are not the server's problem


def test_an_unreachable_server_leaves_local_accounts_working_and_is_recorded(client, configure, stranger,
                                                                               closed_port, caplog):
    configure(server_uri=f"ldap://127.0.0.1:{closed_port}")
    with caplog.at_level(logging.DEBUG):
        started = time.monotonic()
        refused = sign_in(client, "amy", password_of("amy"))
        took = time.monotonic() - started
        assert refused.status_code == 200 and WRONG in refused.content.decode() and took < 2, took
        assert sign_in(client, "charlie", "charlie-password-1").status_code == 302  # the local account
        assert signed_in_as(client) == "charlie"
    problem = LdapSettings.load()
    assert problem.last_problem == f"Cannot reach ldap://127.0.0.1:{closed_port}: connection refused"
    assert problem.last_problem_at is not None
    assert any("LDAP sign-in: Cannot reach" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
    # The settings page says so.
    admin_client = Client()
    admin_client.force_login(User.objects.get(username="alice"))
    page = admin_client.get("/people/ldap/").content.decode()
    assert "A sign-in through LDAP failed on the server's side" in page and "connection refused" in page


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_a_server_that_never_answers_costs_a_sign_in_only_the_timeout(client, configure, silent_port, scheme):
    configure(server_uri=f"{scheme}://127.0.0.1:{silent_port}", timeout=1)
    started = time.monotonic()
    answer = sign_in(client, "amy", password_of("amy"))
    took = time.monotonic() - started
    assert answer.status_code == 200 and WRONG in answer.content.decode()
    assert took < 4, f"the login page waited {took:.1f} s for a silent {scheme} server"
    assert LdapSettings.load().last_problem


def test_starttls_and_ldaps_with_the_generated_ca_sign_in(client, configure, slapd: Slapd):
    configure(start_tls=True, ca_certificate=slapd.ca.cert)
    assert sign_in(client, "amy", password_of("amy")).status_code == 302
    client.logout()
    configure(server_uri=slapd.ldaps_uri, ca_certificate=slapd.ca.cert)
    assert sign_in(client, "ben", password_of("ben")).status_code == 302
    assert LdapSettings.load().last_problem == ""


def test_starttls_with_a_wrong_ca_refuses_the_sign_in(client, configure):
    from tests.directory.slapd import make_ca

    configure(start_tls=True, ca_certificate=make_ca("someone else").cert)
    answer = sign_in(client, "amy", password_of("amy"))
    assert answer.status_code == 200 and WRONG in answer.content.decode()
    assert LdapSettings.load().last_problem.startswith("StartTLS failed")


def test_a_local_administrator_of_the_same_name_is_never_taken_over(client, ldap_on):
    User.objects.create_superuser("amy", "", "amy-local-password-1")
    assert sign_in(client, "amy", password_of("amy")).status_code == 200  # the directory's password
    assert sign_in(client, "amy", "amy-local-password-1").status_code == 302  # her local one
    assert groups_of("amy") == [] and User.objects.get(username="amy").is_superuser


def test_an_imported_user_signs_in_with_the_directory_under_the_same_name(client, ldap_on):
    imported = User.objects.create_user("ben", "ben@old.test", "ben-imported-password-1")  # a CSV import's
    assert sign_in(client, "ben", password_of("ben")).status_code == 302 and signed_in_as(client) == "ben"
    imported.refresh_from_db()
    assert (imported.first_name, imported.email) == ("Ben", "ben@school.test") and groups_of("ben") == [
        "students", "teachers"]
    assert not AuditEntry.objects.filter(action="user.create").exists()  # found, not made
    client.logout()
    assert sign_in(client, "ben", "ben-imported-password-1").status_code == 302  # the password still works


def test_a_deactivated_user_cannot_sign_in_with_the_directory(client, ldap_on):
    assert sign_in(client, "amy", password_of("amy")).status_code == 302
    User.objects.filter(username="amy").update(is_active=False)
    client.logout()
    answer = sign_in(client, "amy", password_of("amy"))
    assert answer.status_code == 200 and signed_in_as(client) is None


def test_sign_in_throttling_applies_to_directory_users(client, ldap_on):
    for _ in range(10):
        assert sign_in(client, "amy", "guess", address="203.0.113.7").status_code == 200
    refused = sign_in(client, "amy", password_of("amy"), address="203.0.113.7")
    assert refused.status_code == 429 and signed_in_as(client) is None


def test_nothing_happens_while_ldap_sign_in_is_off(client, configure):
    configure(enabled=False)
    assert sign_in(client, "amy", password_of("amy")).status_code == 200
    assert not User.objects.filter(username="amy").exists()


def test_posix_groups_and_a_mapping_by_dn(client, configure):
    configure(group_search_base=POSIX_GROUPS, group_type=LdapSettings.POSIX_GROUP,
              group_mapping=f"cn=lab,{POSIX_GROUPS} => lab", admin_groups="")
    assert sign_in(client, "amy", password_of("amy")).status_code == 302
    assert groups_of("amy") == ["lab"]


def test_a_local_group_is_left_alone(client, ldap_on):
    from django.contrib.auth.models import Group

    assert sign_in(client, "amy", password_of("amy")).status_code == 302
    User.objects.get(username="amy").groups.add(Group.objects.create(name="chess club"))
    client.logout()
    assert sign_in(client, "amy", password_of("amy")).status_code == 302
    assert groups_of("amy") == ["chess club", "students"]
