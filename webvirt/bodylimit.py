"""A ceiling on request bodies, enforced before anything reads them.

Django's ASGI handler spools a whole request body to disk before it looks at the URL or the user,
so without a ceiling anyone, logged in or not, could fill the disk with one request. This ASGI
middleware sits in front of it and answers 413 instead:

- at once, without reading a byte, when Content-Length says the body is too large;
- as soon as the bytes received pass the limit, for bodies sent without Content-Length (chunked).

The limit is small (WEBVIRT_MAX_BODY_BYTES) everywhere, and large (WEBVIRT_MAX_UPLOAD_BYTES) only
on the upload routes, and only for an authenticated administrator. Who the user is (session
cookie or API token) is looked up only when a body passes the small limit on an upload route, so
ordinary requests cost nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.http.cookie import parse_cookie
from django.urls import Resolver404, resolve

from webvirt.accounts import policy
from webvirt.events.auth import header

Scope = dict[str, Any]
# Read-only, as Django's ASGI handler declares them: it may be handed any mapping, not only a dict.
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Views that receive a file (an ISO, a volume's contents): the only ones allowed the large limit.
UPLOAD_VIEWS = frozenset({"install:upload", "storage:volume_upload", "api:upload", "api:pool-upload"})
DISCONNECT: Message = {"type": "http.disconnect"}


def size_text(n: int) -> str:
    """2097152 -> '2 MiB': limits are powers of two in practice, so say them the way people do."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n:,} bytes"


def is_upload_route(path: str) -> bool:
    try:
        return resolve(path).view_name in UPLOAD_VIEWS
    except Resolver404:
        return False


def content_length(scope: Scope) -> int | None:
    """The declared body size; None when there is none (chunked) or it is not a number."""
    value = header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@database_sync_to_async
def token_user(scope: Scope, key: str) -> Any:
    """The user an API token names, or None; throttled and counted like the API's own token check.

    Otherwise "413 or not" would tell a right key from a wrong one, unthrottled.
    """
    from webvirt.accounts import throttle
    from webvirt.accounts.tokens import user_for_token  # the API's lookup: expiry, inactive users

    address = policy.Actor.from_scope(scope).address
    if throttle.blocked(address) is not None:
        return None
    user = user_for_token(key)
    if user is None:
        throttle.failed(address)
    return user


async def request_user(scope: Scope) -> Any:
    """The user an `Authorization: Token` header or the session cookie names, else None."""
    authorization = header(scope, b"authorization") or ""
    if authorization.lower().startswith("token "):
        return await token_user(scope, authorization[6:].strip())
    session_key = parse_cookie(header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    # Channels' get_user does what Django's does, including the check that the password has not changed.
    return await get_user({"session": session})


def too_large_message(limit: int, upload_route: bool, admin: bool) -> str:
    if upload_route and admin:
        return (f"The upload is larger than {size_text(limit)}, the largest this server accepts "
                "(WEBVIRT_MAX_UPLOAD_BYTES).")
    return (f"The request body is larger than {size_text(limit)}, the limit for this page. "
            "Uploads of ISO images are for administrators, on the upload page.")


async def send_too_large(scope: Scope, send: Send, message: str) -> None:
    if scope.get("path", "").startswith("/api/"):
        body, content_type = json.dumps({"error": message, "code": "too_large"}).encode(), b"application/json"
    else:
        body, content_type = f"{message}\n".encode(), b"text/plain; charset=utf-8"
    # Connection: close, because the rest of the body is never read; the connection cannot be reused.
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Request:
    """One HTTP request's limit, worked out lazily, and the bytes of its body seen so far."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope, self._receive, self._send = scope, receive, send
        self.small: int = settings.WEBVIRT_MAX_BODY_BYTES
        self._upload_route: bool | None = None
        self.admin: bool | None = None  # looked up at most once, and only when it matters
        self.received = 0
        self.refused = False  # once the 413 is out, the app hears only that the client went away
        self.started = False

    @property
    def upload_route(self) -> bool:
        """Resolved once, and only for a body past the small limit: most requests never ask."""
        if self._upload_route is None:
            self._upload_route = is_upload_route(self.scope.get("path", ""))
        return self._upload_route

    async def limit_for(self, size: int) -> int:
        """The limit that applies to a body of `size` bytes (the user is looked up only past the small one)."""
        if size <= self.small or not self.upload_route:
            return self.small
        if self.admin is None:
            self.admin = policy.is_admin(await request_user(self.scope))
        return settings.WEBVIRT_MAX_UPLOAD_BYTES if self.admin else self.small

    async def refuse(self, limit: int) -> None:
        self.refused = True
        if not self.started:
            self.started = True
            await send_too_large(self.scope, self._send,
                                 too_large_message(limit, self.upload_route, bool(self.admin)))

    async def receive(self) -> Message:
        if self.refused:
            return DISCONNECT
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            limit = await self.limit_for(self.received)
            if self.received > limit:
                await self.refuse(limit)
                return DISCONNECT
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the client has its 413; whatever the app still says would be a second response
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimit:
    """ASGI middleware: refuse request bodies over the limit before the application reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = _Request(scope, receive, send)
        declared = content_length(scope)
        if declared is not None:
            limit = await request.limit_for(declared)
            if declared > limit:
                return await request.refuse(limit)
        await self.app(scope, request.receive, request.send)
