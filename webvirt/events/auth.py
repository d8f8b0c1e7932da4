"""WebSocket authentication and origin checks for every consumer.

Browsers authenticate with the session cookie and always send an Origin header, which must be
this site's. Scripts authenticate with `Authorization: Token <key>` and may omit Origin. A
cross-origin page can therefore never open a socket with a user's cookie. A bad token counts as a
failure for the client's address, as on the API (accounts/throttle.py); while the address is
throttled every token is refused, right or wrong.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host

from webvirt.accounts.policy import Actor, from_trusted_proxy

THROTTLED = 4429  # the close code of a socket refused because its address failed too often


@database_sync_to_async
def _token_user(scope: dict[str, Any], key: str) -> Any:
    """The token's user, or None when the address is throttled (the refusal is audited once)."""
    from webvirt.accounts import throttle
    from webvirt.accounts.tokens import user_for_token

    actor = Actor.from_scope({**scope, "user": None})
    block = throttle.blocked(actor.address)
    if block is not None:
        throttle.audit(actor, "token.throttled", block)
        return None
    user = user_for_token(key)
    if user is None:
        throttle.failed(actor.address)
    return user or AnonymousUser()


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


Origin = tuple[str, str, int]  # scheme, host, port: what the same-origin rule compares
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(origin: str) -> Origin | None:
    """An Origin header as (scheme, host, port); None for "null" and anything else that is not one."""
    try:
        parts = urlsplit(origin)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return None
    if scheme not in DEFAULT_PORTS or not host or parts.path or parts.query or parts.fragment:
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def host_allowed(host: str) -> bool:
    """Does a Host header name this site (ALLOWED_HOSTS, as Django checks it for HTTP requests)?"""
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin this socket was opened on: its scheme, and the host and port of its Host header.

    The scheme is the connection's own (ws: http, wss: https); a trusted proxy's X-Forwarded-Proto
    is believed, because it ends TLS for us. None when the Host header does not name this site, so a
    page on a rebound DNS name cannot pass as same-origin.
    """
    host = header(scope, b"host") or ""
    if not host_allowed(host):
        return None
    secure = scope.get("scheme") in ("wss", "https")
    proto = header(scope, b"x-forwarded-proto")
    if proto and from_trusted_proxy((scope.get("client") or (None,))[0]):
        secure = proto.split(",")[0].strip().lower() in ("https", "wss")
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def origin_allowed(origin: str, scope: dict[str, Any]) -> bool:
    """Is a page from `origin` allowed to open this socket?

    Same origin (scheme, host and port) as the socket itself, or exactly one of CSRF_TRUSTED_ORIGINS.
    The host name alone is not enough: another port of the same host is another site, and with
    ALLOWED_HOSTS = "*" every host name would do.
    """
    own = own_origin(scope)
    if own is None:
        return False
    return origin in settings.CSRF_TRUSTED_ORIGINS or parse_origin(origin) == own


class WebSocketAuth:
    """Token auth for scripts, session auth (with a same-origin check) for browsers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.session_app = AuthMiddlewareStack(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        authorization = header(scope, b"authorization") or ""
        if origin is not None and not origin_allowed(origin, scope):
            return await _deny(send)
        if authorization.lower().startswith("token "):
            user = await _token_user(scope, authorization[6:].strip())
            if user is None:
                return await _deny(send, THROTTLED)
            return await self.app({**scope, "user": user}, receive, send)
        if origin is None:
            return await _deny(send)  # A cookie without an Origin is not a browser we can check.
        return await self.session_app(scope, receive, send)


async def _deny(send: Any, code: int = 4403) -> None:
    await send({"type": "websocket.close", "code": code})
