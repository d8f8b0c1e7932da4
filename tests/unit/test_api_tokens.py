"""API tokens: shown once, stored as a hash, optionally expiring, listed and revoked by their owner only."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from webvirt.accounts.models import ApiToken, AuditEntry
from webvirt.accounts.tokens import create_token, user_for_token
from webvirt.events.auth import WebSocketAuth

pytestmark = pytest.mark.django_db


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_text() -> str:
    """Every column of every stored token, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        return repr(cursor.fetchall())


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(client, stranger):
    client.force_login(stranger)
    response = client.post("/api/v1/tokens/", {"name": "backup script"}, content_type="application/json")
    assert response.status_code == 201
    key = response.json()["key"]
    assert len(key) >= 40 and response.json()["prefix"] == key[:8] and response.json()["expires"] is None

    assert key not in stored_text()
    row = ApiToken.objects.get()
    assert row.digest == hashlib.sha256(key.encode()).hexdigest() and row.name == "backup script"

    listed = client.get("/api/v1/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["backup script"] and "key" not in listed[0]
    assert key not in client.get(f"/api/v1/tokens/{row.pk}/").content.decode()
    mine = token_client(key).get("/api/v1/tokens/")
    assert mine.status_code == 200 and mine.json()["count"] == 1
    row.refresh_from_db()
    assert row.last_used is not None


def test_a_token_with_an_expiry_stops_working_then(client, stranger):
    client.force_login(stranger)
    response = client.post("/api/v1/tokens/", {"expires_days": 7}, content_type="application/json")
    expires = ApiToken.objects.get().expires
    assert expires is not None and abs(expires - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    key = response.json()["key"]
    assert token_client(key).get("/api/v1/tokens/").status_code == 200

    ApiToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    refused = token_client(key).get("/api/v1/tokens/")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == "Token"
    assert refused.json() == {"error": "The API token is unknown, revoked or expired.", "code": "authentication_failed"}
    assert user_for_token(key) is None


def test_a_bad_expiry_is_refused_with_a_sentence(client, stranger):
    client.force_login(stranger)
    response = client.post("/api/v1/tokens/", {"expires_days": 0}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"].startswith("expires_days:")
    assert not ApiToken.objects.exists()


def test_the_owner_lists_and_revokes_tokens_and_both_are_audited(stranger):
    first, first_key = create_token(stranger, name="first")
    _second, second_key = create_token(stranger, name="second")
    api = token_client(second_key)
    assert [t["name"] for t in api.get("/api/v1/tokens/").json()["results"]] == ["second", "first"]

    assert api.delete(f"/api/v1/tokens/{first.pk}/").status_code == 204
    assert token_client(first_key).get("/api/v1/tokens/").status_code == 401
    assert [t["name"] for t in api.get("/api/v1/tokens/").json()["results"]] == ["second"]

    created = api.post("/api/v1/tokens/", {"name": "third"}, format="json")
    assert created.status_code == 201
    entries = {e.action: e for e in AuditEntry.objects.filter(action__startswith="token.")}
    assert entries["token.revoke"].object_repr == f"first ({first.prefix}…)"
    assert entries["token.revoke"].username == "charlie" and entries["token.revoke"].via == "api"
    assert entries["token.create"].object_repr.startswith("third (")
    assert created.json()["key"] not in repr(list(AuditEntry.objects.values()))


def test_someone_elses_token_answers_404_and_is_never_listed(api, stranger):
    theirs, their_key = create_token(stranger, name="charlie's")
    assert api.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert api.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404  # administrators too
    assert "charlie's" not in api.get("/api/v1/tokens/").content.decode()
    assert token_client(their_key).get("/api/v1/tokens/").status_code == 200


def test_the_tokens_page_creates_shows_once_and_revokes_with_confirmation(client, stranger, admin):
    client.force_login(stranger)
    page = client.get("/accounts/tokens/")
    assert page.status_code == 200 and 'href="/accounts/tokens/"' in page.content.decode()  # the user menu

    created = client.post("/accounts/tokens/", {"name": "laptop", "expires_days": "30"})
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=stranger)
    key = created.context["new_key"]
    assert f'value="{key}"' in created.content.decode() and user_for_token(key) == stranger
    again = client.get("/accounts/tokens/").content.decode()
    assert key not in again and f"{token.prefix}…" in again and "data-confirm=\"Revoke laptop" in again

    others, _ = create_token(admin, name="alice's")
    assert "alice&#x27;s" not in again
    assert client.post(f"/accounts/tokens/{others.pk}/revoke/").status_code == 404
    assert client.get(f"/accounts/tokens/{token.pk}/revoke/").status_code == 405  # revoking takes a POST

    revoked = client.post(f"/accounts/tokens/{token.pk}/revoke/", follow=True)
    assert "Revoked laptop" in revoked.content.decode()
    assert not ApiToken.objects.filter(user=stranger).exists() and ApiToken.objects.filter(pk=others.pk).exists()


def test_the_tokens_page_refuses_a_bad_expiry(client, stranger):
    client.force_login(stranger)
    response = client.post("/accounts/tokens/", {"name": "x", "expires_days": "-3"})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_apitoken_prints_a_token_that_works_with_a_name_and_expiry(admin):
    out = StringIO()
    call_command("apitoken", "alice", "--name", "nightly", "--expires-days", "2", stdout=out)
    key = out.getvalue().strip()
    token = ApiToken.objects.get(user=admin)
    assert token.name == "nightly" and token.expires is not None
    assert timedelta(days=2) - timedelta(minutes=1) < token.expires - timezone.now() <= timedelta(days=2)
    assert key not in stored_text()
    assert token_client(key).get("/api/v1/hosts/").status_code == 200
    assert AuditEntry.objects.filter(action="token.create", via="cli", username="alice").exists()


async def _remember_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": None})
    await send({"type": "websocket.close", "code": 1000, "reason": scope["user"].get_username() or "-"})


def socket_user(key: str) -> str:
    """Open a socket with `Authorization: Token <key>` and no Origin, as a script does: whom it is for."""
    scope = {"type": "websocket", "path": "/ws/events/", "query_string": b"", "scheme": "ws",
             "client": ("127.0.0.1", 50000), "subprotocols": [],
             "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Token {key}".encode())]}

    async def run() -> str:
        communicator = ApplicationCommunicator(WebSocketAuth(_remember_user), scope)
        await communicator.send_input({"type": "websocket.connect"})
        assert (await communicator.receive_output(5))["type"] == "websocket.accept"
        return (await communicator.receive_output(5))["reason"]

    return asyncio.run(run())


@pytest.mark.django_db(transaction=True)  # the socket looks the token up on another thread
def test_websockets_authenticate_with_the_new_tokens(stranger):
    token, key = create_token(stranger)
    assert socket_user(key) == "charlie"
    assert socket_user("not-a-token-anyone-has") == "-"
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert socket_user(key) == "-"


def test_console_tickets_and_the_gateway_are_bound_to_the_new_tokens(admin, domain_row):
    from urllib.parse import parse_qs, urlsplit

    from webvirt.consoles import services
    from webvirt.consoles.websockify_plugin import _who

    _token, key = create_token(admin)
    domain = domain_row(start=True)
    response = token_client(key).post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"}, format="json")
    assert response.status_code == 201
    ticket = parse_qs(urlsplit(response.json()["path"]).query)["ticket"][0]
    assert services.take(ticket).binding == services.binding(token_key=key)  # the script's token, not a session
    assert _who({"Authorization": f"Token {key}"}) == (admin, services.binding(token_key=key))
    assert _who({"Authorization": "Token not-a-token-anyone-has"})[0] is None
