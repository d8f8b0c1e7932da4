"""The audit trail's client address cannot be forged with X-Forwarded-For.

One rule everywhere (accounts/policy.py `client_address`): the address is the socket's peer; only
when that peer is one of WEBVIRT_TRUSTED_PROXIES is X-Forwarded-For believed, and then its last
entry, the one our proxy appended. The console sockets are opened on a real web server (uvicorn)
and a real console gateway (websockify), both told to trust 127.0.0.2 as their proxy; the client
connects from 127.0.0.2 (the "proxy") or 127.0.0.3 (anyone else). uvicorn's own proxy-header
handling is off (--no-proxy-headers, as in the Procfile), so a client on 127.0.0.1 cannot use it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from django.test import RequestFactory

from tests import live
from tests.consoles.conftest import run
from tests.consoles.fakevnc import GREETING
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor

PROXY = "127.0.0.2"  # trusted by the servers started here
ANYONE = "127.0.0.3"
FORGED = "6.6.6.6"


# The rule itself ---------------------------------------------------------------------------------

def test_the_peer_is_the_address_unless_it_is_a_trusted_proxy(settings):  # type: ignore[no-untyped-def]
    from webvirt.accounts.policy import client_address

    settings.WEBVIRT_TRUSTED_PROXIES = ["10.0.0.1"]
    assert client_address("192.0.2.5", None) == "192.0.2.5"
    assert client_address("192.0.2.5", FORGED) == "192.0.2.5"  # anyone may write that header
    assert client_address("10.0.0.1", None) == "10.0.0.1"
    # The proxy appends the address it saw: the entries before it are whatever the client sent.
    assert client_address("10.0.0.1", f"{FORGED}, 203.0.113.7") == "203.0.113.7"
    assert client_address("10.0.0.1", "2001:db8::7") == "2001:db8::7"
    # Nothing that is not an IP address reaches the audit trail (PostgreSQL's inet would refuse it).
    assert client_address("10.0.0.1", "unknown") is None
    assert client_address(None, FORGED) is None
    assert client_address("", None) is None


def test_http_requests_and_sockets_share_the_rule(settings):  # type: ignore[no-untyped-def]
    settings.WEBVIRT_TRUSTED_PROXIES = [PROXY]

    def scope(peer: str, forwarded: list[bytes]) -> dict:
        return {"client": (peer, 4000), "user": None, "headers": [(b"x-forwarded-for", v) for v in forwarded]}

    assert Actor.from_scope(scope(ANYONE, [FORGED.encode()])).address == ANYONE
    # Two header lines are one list: the last entry of the last line is what our proxy added.
    assert Actor.from_scope(scope(PROXY, [FORGED.encode(), b"203.0.113.7"])).address == "203.0.113.7"
    assert Actor.from_scope({"headers": []}).address is None  # no peer (a UNIX socket)
    assert Actor.from_scope(scope(ANYONE, [])).via == "ws"
    request = RequestFactory().get("/", REMOTE_ADDR=ANYONE, HTTP_X_FORWARDED_FOR=FORGED)
    request.user = None
    assert Actor.from_request(request).address == ANYONE


# Real servers ------------------------------------------------------------------------------------

@pytest.fixture
def web(transactional_db, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    process, url = live.start_web(tmp_path, WEBVIRT_TRUSTED_PROXIES=PROXY)
    yield url.replace("http://", "ws://")
    process.stop()


GATEWAYS = {
    "gateway": [str(live.ROOT / ".venv/bin/python"), "-m", "webvirt.consoles.gateway"],
    "websockify": [str(live.ROOT / ".venv/bin/websockify"), "--token-plugin",
                   "webvirt.consoles.websockify_plugin.TicketTokens", "--auth-plugin",
                   "webvirt.consoles.websockify_plugin.TicketAuth"],
}


@pytest.fixture(params=sorted(GATEWAYS))
def gateway(request, transactional_db, tmp_path) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A console gateway trusting PROXY: (its kind, its URL)."""
    port = live.free_port()
    proc = live.Process("gateway", [*GATEWAYS[request.param], f"127.0.0.1:{port}"], tmp_path,
                        PYTHONPATH=str(live.ROOT), WEBVIRT_TRUSTED_PROXIES=PROXY)
    deadline = time.monotonic() + 15
    while "Listen on" not in proc.output() and "listening" not in proc.output().lower():
        assert proc.proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    yield request.param, f"ws://127.0.0.1:{port}/"
    proc.stop()


def new_ticket(api, domain) -> str:  # type: ignore[no-untyped-def]
    """A VNC ticket asked for the way a script does (so bound to the API client's token)."""
    response = api.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": "vnc"}, format="json")
    assert response.status_code == 201, response.content
    return parse_qs(urlsplit(response.json()["path"]).query)["ticket"][0]


def open_console(url: str, api, source: str, forwarded: str) -> bytes:  # type: ignore[no-untyped-def]
    """Open a console socket from the local address `source`, sending X-Forwarded-For; return the greeting."""

    async def exchange() -> bytes:
        headers = {"Authorization": api._credentials["HTTP_AUTHORIZATION"], "X-Forwarded-For": forwarded}
        async with websockets.connect(url, additional_headers=headers, open_timeout=5,
                                      local_addr=(source, 0)) as ws:
            data = await live.recv(ws)
            return data if isinstance(data, bytes) else data.encode()

    return run(exchange())


def opened_from(via: str) -> list[str | None]:
    """The addresses of the consoles opened through `via`, oldest first."""
    entries = AuditEntry.objects.filter(action="console.vnc", outcome=AuditEntry.OK, via=via).order_by("pk")
    return [entry.address for entry in entries]


@pytest.mark.django_db(transaction=True)
def test_the_console_proxy_records_the_peer_not_a_forged_address(  # type: ignore[no-untyped-def]
        web, api, fake_vnc, console_domains):
    domain = console_domains(fake_vnc.port)
    url = lambda: f"{web}/ws/console/vnc/{domain.pk}/?ticket={new_ticket(api, domain)}"  # noqa: E731

    assert open_console(url(), api, ANYONE, FORGED) == GREETING
    assert open_console(url(), api, PROXY, f"{FORGED}, 203.0.113.7") == GREETING
    # uvicorn's own proxy-header handling (off, as in the Procfile) would believe 127.0.0.1.
    assert open_console(url(), api, "127.0.0.1", FORGED) == GREETING
    assert opened_from("ws") == [ANYONE, "203.0.113.7", "127.0.0.1"]


@pytest.mark.django_db(transaction=True)
def test_the_console_gateway_records_the_peer_not_a_forged_address(  # type: ignore[no-untyped-def]
        gateway, api, fake_vnc, console_domains):
    kind, url = gateway
    domain = console_domains(fake_vnc.port)

    assert open_console(f"{url}?token={new_ticket(api, domain)}", api, ANYONE, FORGED) == GREETING
    assert open_console(f"{url}?token={new_ticket(api, domain)}", api, PROXY, f"{FORGED}, 203.0.113.7") == GREETING
    # Plain websockify too: its plugins find the socket's peer on the request handler that calls them.
    assert opened_from("gateway") == [ANYONE, "203.0.113.7"], kind
