"""The optional console gateway: websockify with webvirt's token plugins applies the same ticket checks.

A real websockify process (the gateway) in front of a fake VNC server that counts connections.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client

from tests import live
from tests.consoles.conftest import run, ws_exchange
from tests.consoles.fakevnc import GREETING, FakeVncServer
from tests.live import wait_for
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor
from webvirt.consoles import services

PLUGIN = "webvirt.consoles.websockify_plugin"


COMMANDS = {
    # webvirt's gateway process: websockify with the plugins preset, auditing every session's end
    "gateway": [str(live.ROOT / ".venv/bin/python"), "-m", "webvirt.consoles.gateway"],
    # websockify itself with the plugins: the same checks, opens audited
    "websockify": [str(live.ROOT / ".venv/bin/websockify"), "--token-plugin", f"{PLUGIN}.TicketTokens",
                   "--auth-plugin", f"{PLUGIN}.TicketAuth"],
}


@pytest.fixture(params=sorted(COMMANDS))
def gateway(request, transactional_db, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = live.free_port()
    proc = live.Process("gateway", [*COMMANDS[request.param], f"127.0.0.1:{port}"], tmp_path,
                        PYTHONPATH=str(live.ROOT))
    deadline = time.monotonic() + 15
    while "Listen on" not in proc.output() and "listening" not in proc.output().lower():
        assert proc.proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    request.node.gateway_kind, request.node.gateway_process = request.param, proc
    yield f"ws://127.0.0.1:{port}/"
    proc.stop()


def session(user) -> tuple[Client, dict[str, str]]:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client, {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}


def ticket(client: Client, domain_id: int) -> str:
    response = client.post(f"/api/v1/domains/{domain_id}/console/", {"kind": "vnc"}, content_type="application/json")
    assert response.status_code == 201, response.content
    return parse_qs(urlsplit(response.json()["path"]).query)["ticket"][0]


# websockify hangs up without an HTTP answer when its token plugin finds no console for the ticket
# (unknown, used, expired); its log says "Token '<ticket>' not found".
HUNG_UP = "hung up without an HTTP answer"


def gateway_answer(url: str, expect: int = 1, **kwargs) -> int | str | bytes:  # type: ignore[no-untyped-def]
    """What the gateway made of a console socket: the HTTP status it refused the handshake with (403:
    the auth plugin refused the ticket), HUNG_UP, or the first bytes from the VNC server."""
    try:
        return run(ws_exchange(url, expect=expect, **kwargs))
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code
    except websockets.exceptions.InvalidMessage:
        return HUNG_UP


def refused_audits() -> list[tuple[str, str, str]]:
    entries = AuditEntry.objects.filter(action="console.vnc", via="gateway", outcome=AuditEntry.REFUSED)
    return [(e.username, e.object_id, e.detail) for e in entries.order_by("pk")]


@pytest.mark.django_db(transaction=True)
def test_the_gateway_checks_tickets_like_the_built_in_proxy(  # type: ignore[no-untyped-def]
        request, gateway, admin, stranger, fake_vnc, console_domains):
    domain = console_domains(fake_vnc.port)
    bob = get_user_model().objects.create_superuser("bob", "", "bob-password-1")
    alice, cookie = session(admin)
    bob_client, _ = session(bob)
    origin = "http://127.0.0.1:8000"
    url = lambda t: f"{gateway}?token={t}"  # noqa: E731
    process = request.node.gateway_process

    # Tickets the auth plugin refuses: 403, and an audit entry saying why.
    assert gateway_answer(url(ticket(alice, domain.pk)), origin=origin) == 403  # no session
    assert gateway_answer(url(ticket(bob_client, domain.pk)), headers=cookie, origin=origin) == 403  # bob's ticket
    assert gateway_answer(url(ticket(alice, domain.pk)), headers=cookie, origin="http://evil.example") == 403
    refused = ("", str(domain.pk), services.REFUSED)
    assert refused_audits() == [refused, (admin.username, str(domain.pk), services.REFUSED), refused]
    # Tickets that name no console (expired, made up): the token plugin finds nothing, the gateway hangs up.
    expired = services.issue(Actor(user=admin), domain, "vnc",
                             services.binding(session_key=alice.session.session_key), ttl=0.2)
    time.sleep(0.4)
    stale = parse_qs(urlsplit(expired.path).query)["ticket"][0]
    assert gateway_answer(url(stale), headers=cookie, origin=origin) == HUNG_UP
    assert gateway_answer(url("made-up"), headers=cookie, origin=origin) == HUNG_UP
    assert f"Token '{stale}' not found" in process.output() and "Token 'made-up' not found" in process.output()
    stranger_client, _ = session(stranger)
    assert stranger_client.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"},
                                content_type="application/json").status_code == 404
    assert fake_vnc.connections == 0

    good = ticket(alice, domain.pk)
    assert gateway_answer(url(good), headers=cookie, origin=origin, expect=len(GREETING)) == GREETING
    assert fake_vnc.connections == 1
    assert gateway_answer(url(good), headers=cookie, origin=origin) == HUNG_UP  # used once already
    assert f"Token '{good}' not found" in process.output()
    assert fake_vnc.connections == 1
    assert AuditEntry.objects.filter(action="console.vnc", via="gateway", outcome=AuditEntry.OK).count() == 1
    assert len(refused_audits()) == 3
    if request.node.gateway_kind == "gateway":
        # The session's end is recorded too, with the bytes carried (at least the 12-byte greeting).
        closed = wait_for(lambda: AuditEntry.objects.filter(action="console.vnc.close", via="gateway").first(),
                          timeout=30)
        assert closed.object_id == str(domain.pk) and closed.username == "alice"
        assert f"{len(GREETING)} bytes to the browser" in closed.detail and "closed by the browser" in closed.detail

    # A ticket for another domain, presented at a path naming this one: the gateway goes where the
    # ticket says (the other domain's VNC server), never to this domain's.
    other_vnc = FakeVncServer()
    try:
        other = console_domains(other_vnc.port)
        path = f"ws/console/vnc/{domain.pk}/?token={ticket(alice, other.pk)}"
        assert gateway_answer(gateway + path, headers=cookie, origin=origin, expect=len(GREETING)) == GREETING
        assert (other_vnc.connections, fake_vnc.connections) == (1, 1)
        opened = AuditEntry.objects.filter(action="console.vnc", via="gateway", outcome=AuditEntry.OK)
        assert [e.object_id for e in opened.order_by("pk")] == [str(domain.pk), str(other.pk)]
    finally:
        other_vnc.close()
