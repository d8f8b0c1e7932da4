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
from tests.consoles.fakevnc import GREETING
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
    request.node.gateway_kind = request.param
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


def gateway_refuses(url: str, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    try:
        run(ws_exchange(url, expect=1, timeout=5, **kwargs))
    except (websockets.exceptions.InvalidStatus, websockets.exceptions.InvalidMessage,
            websockets.exceptions.ConnectionClosed, EOFError, ConnectionError):
        return True
    return False


@pytest.mark.django_db(transaction=True)
def test_the_gateway_checks_tickets_like_the_built_in_proxy(  # type: ignore[no-untyped-def]
        request, gateway, admin, stranger, fake_vnc, console_domains):
    domain = console_domains(fake_vnc.port)
    bob = get_user_model().objects.create_superuser("bob", "", "bob-password-1")
    alice, cookie = session(admin)
    bob_client, _ = session(bob)
    origin = "http://127.0.0.1:8000"
    url = lambda t: f"{gateway}?token={t}"  # noqa: E731

    assert gateway_refuses(url(ticket(alice, domain.pk)), origin=origin)  # no session
    expired = services.issue(Actor(user=admin), domain, "vnc",
                             services.binding(session_key=alice.session.session_key), ttl=0.2)
    time.sleep(0.4)
    assert gateway_refuses(url(parse_qs(urlsplit(expired.path).query)["ticket"][0]), headers=cookie, origin=origin)
    assert gateway_refuses(url(ticket(bob_client, domain.pk)), headers=cookie, origin=origin)  # bob's ticket
    assert gateway_refuses(url(ticket(alice, domain.pk)), headers=cookie, origin="http://evil.example")
    assert gateway_refuses(url("made-up"), headers=cookie, origin=origin)
    stranger_client, _ = session(stranger)
    assert stranger_client.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"},
                                content_type="application/json").status_code == 404
    assert fake_vnc.connections == 0

    good = ticket(alice, domain.pk)
    assert run(ws_exchange(url(good), headers=cookie, origin=origin, expect=len(GREETING))) == GREETING
    assert fake_vnc.connections == 1
    assert gateway_refuses(url(good), headers=cookie, origin=origin)  # used once already
    assert fake_vnc.connections == 1
    assert AuditEntry.objects.filter(action="console.vnc", via="gateway", outcome=AuditEntry.OK).count() == 1
    assert AuditEntry.objects.filter(action="console.vnc", via="gateway", outcome=AuditEntry.REFUSED).count() >= 3
    if request.node.gateway_kind == "gateway":
        # The session's end is recorded too, with the bytes carried (at least the 12-byte greeting).
        deadline = time.monotonic() + 10
        while not (closed := AuditEntry.objects.filter(action="console.vnc.close", via="gateway").first()):
            assert time.monotonic() < deadline, "the gateway did not record the session's end"
            time.sleep(0.1)
        assert closed.object_id == str(domain.pk) and closed.username == "alice"
        assert f"{len(GREETING)} bytes to the browser" in closed.detail and "closed by the browser" in closed.detail
