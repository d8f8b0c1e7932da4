"""Signing in through a real OpenID Connect provider (tests/oidc/provider, on 127.0.0.1): the code flow,
users made at their first sign-in, groups from the groups claim, and every refusal said on the login page."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client

from tests import people
from tests.oidc.conftest import Provider, sign_in
from tests.oidc.provider.people import EXPIRED_CLIENT, TAMPERED_CLIENT
from webvirt.accounts.models import AuditEntry

pytestmark = pytest.mark.django_db
User = get_user_model()


def said(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def refused(client: Client, response) -> str:  # type: ignore[no-untyped-def]
    """The refusal's sentence, once it is checked that the person is back on the login page, not signed in."""
    assert response.status_code == 302, response.content[:300]
    assert urlsplit(response["Location"]).path == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    page = client.get(response["Location"])
    assert page.status_code == 200
    return " ".join(said(response))


def groups_of(user) -> set[str]:  # type: ignore[no-untyped-def]
    return set(user.groups.values_list("name", flat=True))


def test_first_sign_in_creates_the_user_with_mapped_groups(configure, provider: Provider) -> None:
    configure()
    client = Client()
    answer = sign_in(client, provider.session_for("student1"), next_url="/templates/")
    assert answer.status_code == 302 and answer["Location"] == "/templates/"
    user = User.objects.get(username="student1")
    assert int(client.session["_auth_user_id"]) == user.pk
    assert client.session["_auth_user_backend"] == "webvirt.oidc.backend.OidcBackend"
    assert (user.first_name, user.last_name, user.email) == ("Sam", "Student", "student1@example.org")
    assert not user.has_usable_password() and not user.is_staff
    assert groups_of(user) == {"students"}
    created = AuditEntry.objects.get(action="user.create", object_repr="student1")
    assert created.via == "oidc" and created.outcome == AuditEntry.OK and created.username == "student1"
    assert AuditEntry.objects.filter(action="user.groups_synced", object_repr="student1", via="oidc").exists()
    assert client.get("/templates/").status_code == 200  # signed in for real


def test_the_next_sign_in_refreshes_the_groups(configure, provider: Provider) -> None:
    configure()
    sign_in(Client(), provider.session_for("student1"))
    provider.set_groups("student1", "class-2027")
    try:
        answer = sign_in(Client(), provider.session_for("student1"))
    finally:
        provider.set_groups("student1", "class-2026")
    assert answer.status_code == 302 and answer["Location"] == "/domains/"
    user = User.objects.get(username="student1")
    assert groups_of(user) == {"students-2027"}
    assert User.objects.filter(username="student1").count() == 1


def test_an_administrator_group_makes_an_administrator(configure, provider: Provider) -> None:
    configure()
    sign_in(Client(), provider.session_for("teacher1"))
    user = User.objects.get(username="teacher1")
    assert user.is_staff and user.is_superuser
    assert groups_of(user) == {"teachers"}


def test_local_groups_are_left_alone(configure, provider: Provider) -> None:
    configure()
    sign_in(Client(), provider.session_for("student1"))
    user = User.objects.get(username="student1")
    user.groups.add(Group.objects.get_or_create(name="robotics-club")[0])
    sign_in(Client(), provider.session_for("student1"))
    assert groups_of(user) == {"students", "robotics-club"}


def test_a_tampered_id_token_is_refused(configure, provider: Provider) -> None:
    configure(client_id=TAMPERED_CLIENT)
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("student1")))
    assert "signature does not match" in sentence
    assert not User.objects.filter(username="student1").exists()


def test_an_expired_id_token_is_refused(configure, provider: Provider) -> None:
    configure(client_id=EXPIRED_CLIENT)
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("student1")))
    assert "has expired" in sentence
    assert not User.objects.filter(username="student1").exists()


def test_a_wrong_client_secret_is_refused(configure, provider: Provider) -> None:
    configure(client_secret="not-the-secret")
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("student1")))
    assert "client id or secret" in sentence
    assert not User.objects.filter(username="student1").exists()


def test_a_sign_in_without_the_username_claim_is_refused(configure, provider: Provider) -> None:
    configure(username_claim="nickname")
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("student1")))
    assert "did not send the claim 'nickname'" in sentence
    assert not User.objects.filter(username="student1").exists()


def test_a_local_administrator_is_not_taken_over(configure, provider: Provider) -> None:
    configure()
    User.objects.create_superuser("teacher1", "", "teacher1-local-password")
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("teacher1")))
    assert "is an administrator account with its own password here" in sentence


def test_an_imported_user_signs_in_under_the_same_name(configure, provider: Provider) -> None:
    """Someone made on the People page or by a CSV import (with a password) signs in through the provider too."""
    configure()
    imported = people.make_user("student1")
    answer = sign_in(Client(), provider.session_for("student1"))
    assert answer.status_code == 302 and answer["Location"] == "/domains/"
    imported.refresh_from_db()
    assert imported.check_password("student1-password-1")  # the local password keeps working
    assert imported.email == "student1@example.org" and groups_of(imported) == {"students"}
    assert AuditEntry.objects.get(action="user.update", object_repr="student1").via == "oidc"
    assert User.objects.filter(username="student1").count() == 1


def test_next_leads_only_within_webvirt(configure, provider: Provider) -> None:
    configure()
    answer = sign_in(Client(), provider.session_for("student1"), next_url="https://elsewhere.example/")
    assert answer.status_code == 302 and answer["Location"] == "/"


def test_a_deactivated_account_is_refused(configure, provider: Provider) -> None:
    configure()
    signed_in = Client()
    sign_in(signed_in, provider.session_for("student1"))
    User.objects.filter(username="student1").update(is_active=False)
    assert signed_in.get("/templates/")["Location"].startswith("/accounts/login/")  # its session ended too
    client = Client()
    sentence = refused(client, sign_in(client, provider.session_for("student1")))
    assert "deactivated" in sentence


def test_a_callback_with_a_state_this_browser_never_had_is_refused(configure, provider: Provider) -> None:
    configure()
    first, second = Client(), Client()
    first.get("/accounts/login/oidc/")  # this browser has a sign-in under way; the answer is not for it
    sentence = refused(first, first.get("/accounts/login/oidc/callback/", {"code": "x", "state": "forged"}))
    assert "not started in this browser" in sentence
    assert "not started in this browser" in refused(
        second, second.get("/accounts/login/oidc/callback/", {"code": "x", "state": "forged"}))


def test_a_code_is_used_once(configure, provider: Provider) -> None:
    """A replayed callback (the same code and state again) signs nobody in."""
    configure()
    client = Client()
    start = client.get("/accounts/login/oidc/")
    back = provider.session_for("student1").get(start["Location"], allow_redirects=False, timeout=10)
    callback = urlsplit(back.headers["Location"])
    assert client.get(f"{callback.path}?{callback.query}")["Location"] == "/"
    replay = Client()
    assert "not started in this browser" in refused(replay, replay.get(f"{callback.path}?{callback.query}"))


def test_the_provider_saying_no_is_said(configure) -> None:
    configure()
    client = Client()
    start = client.get("/accounts/login/oidc/")
    state = dict(pair.split("=", 1) for pair in urlsplit(start["Location"]).query.split("&"))["state"]
    answer = client.get("/accounts/login/oidc/callback/", {"error": "access_denied", "state": state,
                                                             "error_description": "The user cancelled"})
    assert "did not sign you in: The user cancelled" in refused(client, answer)


def test_while_it_is_off_the_routes_send_to_the_login_page(configure) -> None:
    configure(enabled=False)
    client = Client()
    answer = client.get("/accounts/login/oidc/", {"next": "/templates/"})
    assert answer["Location"] == "/accounts/login/?next=%2Ftemplates%2F"
    assert "not set up" in " ".join(said(answer))
    assert "not set up" in refused(client, client.get("/accounts/login/oidc/callback/", {"code": "x", "state": "y"}))


def test_password_sign_in_still_works_beside_it(configure, client: Client) -> None:
    configure()
    people.make_user("bob")
    answer = client.post("/accounts/login/", {"username": "bob", "password": "bob-password-1"})
    assert answer.status_code == 302
    assert client.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
