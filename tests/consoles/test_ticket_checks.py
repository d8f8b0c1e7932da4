"""Who may open a console: every way of presenting a ticket that is not yours, not valid or not for
this place is refused at the handshake, and none of them reaches the VNC server (a local fake one
that counts its connections). Against the real web server (uvicorn) and Redis.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests import live
from tests.consoles.conftest import refused, run, ws_exchange, ws_url
from tests.consoles.fakevnc import GREETING, WELCOME
from tests.live import wait_for
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor
from webvirt.consoles import services


def browser_session(user) -> tuple[Client, dict[str, str]]:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client, {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}


def ticket_path(client: Client, domain_id: int, kind: str = "vnc") -> str:
    response = client.post(f"/api/v1/domains/{domain_id}/console/", {"kind": kind}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["path"]


@pytest.mark.django_db(transaction=True)
def test_every_bad_ticket_is_refused_and_none_reaches_the_vnc_server(  # type: ignore[no-untyped-def]
        live_stack, admin, stranger, fake_vnc, console_domains):
    domain, other = console_domains(fake_vnc.port), console_domains(fake_vnc.port)
    bob = get_user_model().objects.create_superuser("bob", "", "bob-password-1")
    alice, cookie = browser_session(admin)
    bob_client, _bob_cookie = browser_session(bob)
    origin = live_stack.url
    url = lambda path: ws_url(live_stack.url, path)  # noqa: E731

    # No session: a valid ticket presented without the session it was issued to.
    assert refused(url(ticket_path(alice, domain.pk)), origin=origin)
    # Expired: issued for 0.2 s, presented after it lapsed.
    actor = Actor(user=admin)
    expired = services.issue(actor, domain, "vnc", services.binding(session_key=alice.session.session_key), ttl=0.2)
    time.sleep(0.4)
    assert refused(url(expired.path), headers=cookie, origin=origin)
    # Another user's ticket, presented with alice's session.
    assert refused(url(ticket_path(bob_client, domain.pk)), headers=cookie, origin=origin)
    # A ticket for another domain, presented on this domain's socket.
    assert refused(url(ticket_path(alice, other.pk).replace(f"/{other.pk}/", f"/{domain.pk}/")), headers=cookie,
                   origin=origin)
    # A serial ticket presented on the VNC socket.
    assert refused(url(ticket_path(alice, domain.pk, "serial").replace("/serial/", "/vnc/")), headers=cookie,
                   origin=origin)
    # A made-up ticket, and none at all.
    assert refused(url(f"/ws/console/vnc/{domain.pk}/?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                   headers=cookie, origin=origin)
    assert refused(url(f"/ws/console/vnc/{domain.pk}/"), headers=cookie, origin=origin)
    # Cross-origin: a page elsewhere using alice's cookie with a ticket it somehow got.
    assert refused(url(ticket_path(alice, domain.pk)), headers=cookie, origin="http://evil.example")
    # A stranger cannot even get a ticket: the domain looks missing.
    stranger_client, _ = browser_session(stranger)
    response = stranger_client.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"},
                                    content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}
    assert fake_vnc.connections == 0

    # A good ticket opens the console once; the same ticket again is refused.
    path = ticket_path(alice, domain.pk)
    assert run(ws_exchange(url(path), headers=cookie, origin=origin, expect=len(GREETING))) == GREETING
    assert fake_vnc.connections == 1
    assert refused(url(path), headers=cookie, origin=origin)
    assert fake_vnc.connections == 1

    # Each ticket refused at the socket is in the audit trail once, with its reason: the eight above
    # in order. Not the cross-origin one (the socket's auth refuses the Origin before any console code
    # runs, anonymously) nor the stranger's request (to a stranger the domain does not exist).
    refusals = AuditEntry.objects.filter(action="console.vnc", outcome=AuditEntry.REFUSED).order_by("pk")
    seen = [(e.username, e.detail) for e in refusals]
    assert seen == [("", services.REFUSED), *[(admin.username, services.REFUSED)] * 7], seen
    assert {e.object_id for e in refusals} == {str(domain.pk)}
    assert AuditEntry.objects.filter(action="console.vnc", outcome=AuditEntry.OK, object_id=str(domain.pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_a_script_with_a_token_opens_the_console_and_the_audit_trail_has_its_bytes(  # type: ignore[no-untyped-def]
        live_stack, api, admin, fake_vnc, console_domains):
    domain = console_domains(fake_vnc.port)
    token = api._credentials["HTTP_AUTHORIZATION"]
    response = api.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["url"].startswith("ws://") and body["url"].endswith(body["path"]) and body["expires_at"]
    payload = b"x" * 100_000
    got = run(ws_exchange(ws_url(live_stack.url, body["path"]), headers={"Authorization": token},
                                  send=payload, expect=len(GREETING) + len(payload)))
    assert got == GREETING + payload
    # The token's ticket is bound to the token: the same kind of ticket with a session is refused.
    _client, cookie = browser_session(admin)
    path = api.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"}, format="json").json()["path"]
    assert refused(ws_url(live_stack.url, path), headers=cookie, origin=live_stack.url)

    closed = wait_for(lambda: AuditEntry.objects.filter(action="console.vnc.close").first(), timeout=30)
    assert (closed.username, closed.object_id, closed.via) == ("alice", str(domain.pk), "ws")
    assert f"{len(GREETING) + len(payload)} bytes to the browser, {len(payload)} bytes from it" in closed.detail


@pytest.mark.django_db(transaction=True)
def test_the_proxy_answers_the_vnc_password_so_the_browser_never_sees_it(  # type: ignore[no-untyped-def]
        live_stack, api, fake_vnc, console_domains):
    from tests.consoles.fakevnc import FakeVncServer

    locked = FakeVncServer(password="s3cret!")
    try:
        domain = console_domains(locked.port, password="s3cret!")
        path = api.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"}, format="json").json()["path"]

        async def handshake() -> bytes:
            import websockets

            async with websockets.connect(ws_url(live_stack.url, path),
                                          additional_headers={"Authorization": api._credentials["HTTP_AUTHORIZATION"]}
                                          ) as ws:
                assert await live.recv(ws) == GREETING
                await ws.send(b"RFB 003.008\n")
                assert await live.recv(ws) == bytes([1, 1])  # one security type offered: None
                await ws.send(bytes([1]))
                assert await live.recv(ws) == b"\0\0\0\0"  # security result: OK
                data = b""
                while len(data) < len(WELCOME):
                    data += await live.recv(ws)
                return data

        assert run(handshake()) == WELCOME
        assert locked.auth_ok == 1
    finally:
        locked.close()
