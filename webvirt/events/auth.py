"""WebSocket authentication and origin checks for every consumer.

Browsers authenticate with the session cookie and always send an Origin header, which must be
this site's. Scripts authenticate with `Authorization: Token <key>` and may omit Origin. A
cross-origin page can therefore never open a socket with a user's cookie.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _token_user(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str) -> bool:
    host = origin.split("://", 1)[-1].split("/", 1)[0]
    domain, _port = split_domain_port(host)
    allowed = [*settings.ALLOWED_HOSTS]
    return bool(domain) and (validate_host(domain, allowed) or origin in settings.CSRF_TRUSTED_ORIGINS)


class WebSocketAuth:
    """Token auth for scripts, session auth (with a same-origin check) for browsers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.session_app = AuthMiddlewareStack(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = _header(scope, b"origin")
        authorization = _header(scope, b"authorization") or ""
        if origin is not None and not origin_allowed(origin):
            return await _deny(send)
        if authorization.lower().startswith("token "):
            scope = {**scope, "user": await _token_user(authorization[6:].strip())}
            return await self.app(scope, receive, send)
        if origin is None:
            return await _deny(send)  # A cookie without an Origin is not a browser we can check.
        return await self.session_app(scope, receive, send)


async def _deny(send: Any) -> None:
    await send({"type": "websocket.close", "code": 4403})
