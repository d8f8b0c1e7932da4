"""Sign-ins and API tokens are refused (429) after 10 failures a minute from one address or for one user."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from webvirt import kv
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.tokens import create_token

pytestmark = pytest.mark.django_db

LIMIT = 10
THROTTLED_HERE = "Too many failed sign-ins from this address; wait a minute and try again."
THROTTLED_USER = "Too many failed sign-ins for this user name; wait a minute and try again."


def _forget_counts() -> None:
    for key in kv.client().scan_iter(f"{settings.REDIS_PREFIX}:authfail:*"):
        kv.client().delete(key)


@pytest.fixture(autouse=True)
def counts() -> Iterator[None]:
    """This run's failure counters (its own Redis prefix) start and end empty."""
    _forget_counts()
    yield
    _forget_counts()


def address() -> str:
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


def sign_in(client, username: str, password: str, remote: str):  # type: ignore[no-untyped-def]
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=remote)


def test_the_11th_failed_sign_in_from_an_address_is_refused_with_429_and_audited(client, stranger):
    here, elsewhere = address(), "198.51.100.9"
    for n in range(LIMIT):
        failed = sign_in(client, f"guess-{n}", "wrong", here)
        assert failed.status_code == 200 and "didn't match" in failed.content.decode()

    refused = sign_in(client, "charlie", "charlie-password-1", here)  # even the right password
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    page = refused.content.decode()
    assert THROTTLED_HERE in page and '<form method="post" action="/accounts/login/">' in page
    assert "_auth_user_id" not in client.session

    entry = AuditEntry.objects.get(action="login.throttled")
    assert (entry.outcome, entry.address, entry.object_repr) == (AuditEntry.REFUSED, here, "charlie")
    assert sign_in(client, "charlie", "wrong", here).status_code == 429
    assert AuditEntry.objects.filter(action="login.throttled").count() == 1  # one entry per window

    # The admin's login form is no way around it: signed out, it sends people to this one.
    assert client.get("/admin/login/", REMOTE_ADDR=here).url.startswith("/accounts/login/")

    # Another address is not held back by this one's failures.
    assert sign_in(client, "charlie", "charlie-password-1", elsewhere).status_code == 302


def test_the_11th_failed_sign_in_for_a_user_is_refused_from_any_address(client, stranger):
    for _ in range(LIMIT):
        assert sign_in(client, "Charlie", "wrong", address()).status_code == 200  # user names counted in any case

    fresh = address()
    refused = sign_in(client, "charlie", "charlie-password-1", fresh)
    assert refused.status_code == 429 and THROTTLED_USER in refused.content.decode()
    assert AuditEntry.objects.get(action="login.throttled").detail.startswith("Too many failed sign-ins for this")

    # Someone else signs in from that same fresh address.
    get_user_model().objects.create_user("dora", "", "dora-password-1")
    assert sign_in(client, "dora", "dora-password-1", fresh).status_code == 302


def test_the_11th_bad_token_from_an_address_is_refused_with_429(stranger):
    here, elsewhere = address(), "198.51.100.10"
    _token, key = create_token(stranger)
    client = APIClient()
    for n in range(LIMIT):
        bad = client.get("/api/v1/tokens/", HTTP_AUTHORIZATION=f"Token bad-{n}", REMOTE_ADDR=here)
        assert bad.status_code == 401 and bad["WWW-Authenticate"] == "Token"

    refused = client.get("/api/v1/tokens/", HTTP_AUTHORIZATION="Token bad-again", REMOTE_ADDR=here)
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["code"] == "throttled"
    assert refused.json()["error"].startswith("Too many failed sign-ins from this address.")
    # A valid token from a throttled address is refused too: a right guess must look like a wrong one.
    assert client.get("/api/v1/tokens/", HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=here).status_code == 429
    entry = AuditEntry.objects.get(action="token.throttled")
    assert (entry.outcome, entry.address, entry.via) == (AuditEntry.REFUSED, here, "api")

    # The same valid token from elsewhere works, and a session is not held back at all.
    assert client.get("/api/v1/tokens/", HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=elsewhere).status_code == 200
    client.force_login(stranger)
    assert client.get("/api/v1/tokens/", REMOTE_ADDR=here).status_code == 200


def test_bad_tokens_and_failed_sign_ins_share_the_address_count(client, stranger):
    here = address()
    api = APIClient()
    for n in range(LIMIT):
        api.get("/api/v1/hosts/", HTTP_AUTHORIZATION=f"Token bad-{n}", REMOTE_ADDR=here)
    assert sign_in(client, "charlie", "charlie-password-1", here).status_code == 429
