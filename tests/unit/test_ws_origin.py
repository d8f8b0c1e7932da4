"""The WebSocket Origin check (events/auth.py): a page may open a socket with the user's cookie only
from this very origin (scheme, host and port) or from one listed in CSRF_TRUSTED_ORIGINS.

WebSocketAuth is driven directly (asgiref's communicator), around a tiny application that accepts
whatever reaches it, so a refusal (close code 4403 before the handshake) can only come from the
check itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from webvirt.events.auth import WebSocketAuth

HOST = "127.0.0.1:8000"
SITE = "http://127.0.0.1:8000"
PEER = "198.51.100.20"  # the direct peer of the socket; a proxy only when the test says so


async def _accept_everyone(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})


def handshake(origin: str | None, *, host: str = HOST, scheme: str = "ws", peer: str = PEER,
              extra: dict[str, str] | None = None) -> int | None:
    """Open a socket (with no credentials: the tiny app does not care); None when accepted, else the close code."""
    headers = {"host": host, **({"origin": origin} if origin is not None else {}), **(extra or {})}
    scope = {"type": "websocket", "path": "/ws/events/", "query_string": b"", "scheme": scheme,
             "client": (peer, 50000), "subprotocols": [],
             "headers": [(name.encode(), value.encode()) for name, value in headers.items()]}

    async def run() -> dict[str, Any]:
        communicator = ApplicationCommunicator(WebSocketAuth(_accept_everyone), scope)
        await communicator.send_input({"type": "websocket.connect"})
        answer = await communicator.receive_output(2)
        await communicator.wait(1) if answer["type"] == "websocket.close" else None
        return answer

    answer = asyncio.run(run())
    return None if answer["type"] == "websocket.accept" else answer.get("code")


def test_a_page_of_this_origin_may_open_a_socket():
    assert handshake(SITE) is None
    assert handshake("http://LOCALHOST:8000", host="localhost:8000") is None  # host names have no case
    assert handshake("http://localhost", host="localhost:80") is None  # the default port, written or not


@pytest.mark.parametrize("origin", [
    "http://evil.example:8000",  # another site
    "http://127.0.0.1:9999",  # the same host name on another port is another site
    "https://127.0.0.1:8000",  # another scheme: this socket came in over plain ws:// (http)
    "http://127.0.0.1",  # port 80, not 8000
    "null",  # a sandboxed page or a file
    "http://127.0.0.1:8000/path",  # not an origin at all
])
def test_a_page_of_another_origin_is_refused(origin):  # type: ignore[no-untyped-def]
    assert handshake(origin) == 4403


def test_allowing_every_host_name_does_not_allow_every_origin(settings):  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = ["*"]
    assert handshake("http://evil.example:8000") == 4403
    assert handshake("http://evil.example") == 4403
    assert handshake(SITE) is None


def test_the_host_header_must_name_this_site(settings):  # type: ignore[no-untyped-def]
    # DNS rebinding: evil.example resolved to this server, the page's origin matches the Host it sends.
    assert handshake("http://evil.example:8000", host="evil.example:8000") == 4403
    settings.CSRF_TRUSTED_ORIGINS = ["http://evil.example:8000"]
    assert handshake("http://evil.example:8000", host="evil.example:8000") == 4403


def test_an_origin_listed_in_csrf_trusted_origins_is_allowed(settings):  # type: ignore[no-untyped-def]
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.org"]
    assert handshake("https://console.example.org") is None
    assert handshake("https://console.example.org:8443") == 4403  # exactly, not by host name
    assert handshake("http://console.example.org") == 4403


def test_a_secure_socket_belongs_to_the_https_origin():
    assert handshake("https://127.0.0.1:8000", scheme="wss") is None
    assert handshake(SITE, scheme="wss") == 4403


def test_x_forwarded_proto_counts_from_a_trusted_proxy_only(settings):  # type: ignore[no-untyped-def]
    # TLS ends at the proxy, which talks plain ws:// to us and says so in X-Forwarded-Proto.
    behind_tls = {"x-forwarded-proto": "https"}
    assert handshake("https://127.0.0.1:8000", extra=behind_tls) == 4403  # anyone may send that header
    settings.WEBVIRT_TRUSTED_PROXIES = [PEER]
    assert handshake("https://127.0.0.1:8000", extra=behind_tls) is None
    assert handshake(SITE, extra=behind_tls) == 4403


def test_a_cookie_socket_without_origin_is_refused_and_a_token_script_may_omit_it(
        transactional_db, api):  # type: ignore[no-untyped-def]
    token = {"authorization": api._credentials["HTTP_AUTHORIZATION"]}
    assert handshake(None, extra={"cookie": "sessionid=whatever"}) == 4403  # not a browser we can check
    assert handshake(None, extra=token) is None
    # A script that does send an Origin is held to it like a browser.
    assert handshake("http://evil.example:8000", extra=token) == 4403
    assert handshake(SITE, extra=token) is None


def test_the_console_gateway_wants_a_page_of_its_own_host_even_when_every_host_is_allowed(settings):  # type: ignore[no-untyped-def]
    # The gateway (websockify) listens beside the site on a port of its own, so it compares host names only.
    from webvirt.consoles.websockify_plugin import _origin_allowed

    assert _origin_allowed(SITE, "127.0.0.1:6080")
    assert not _origin_allowed("http://evil.example:8000", "127.0.0.1:6080")
    assert not _origin_allowed("http://evil.example:6080", "evil.example:6080")  # Host not in ALLOWED_HOSTS
    settings.ALLOWED_HOSTS = ["*"]
    assert not _origin_allowed("http://evil.example:8000", "127.0.0.1:6080")
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.org"]
    assert _origin_allowed("https://console.example.org", "127.0.0.1:6080")
