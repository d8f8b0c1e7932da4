"""The optional console gateway: websockify resolving webvirt's console tickets.

    python -m webvirt.consoles.gateway 0.0.0.0:6080      (gateway.py: also audits every close)

or websockify itself, which then records opens only:

    websockify --token-plugin webvirt.consoles.websockify_plugin.TicketTokens \\
               --auth-plugin webvirt.consoles.websockify_plugin.TicketAuth 0.0.0.0:6080

Run with webvirt's settings (DATABASE_URL, REDIS_URL, WEBVIRT_REDIS_PREFIX, ...). With
WEBVIRT_CONSOLE_GATEWAY_URL set on the web processes, VNC tickets point at the gateway
(`<url>?token=<ticket>`). The token plugin takes the ticket from Redis (GETDEL: single use) and
resolves the domain's VNC server; the auth plugin then checks that the same user, with the same
session cookie or API token, presents it from an allowed Origin, and asks the policy again. Both
run in the process websockify forks for the connection, before it connects to the VNC server.

The gateway carries plain TCP VNC only: domains whose VNC needs a libvirt-opened socket, a
password answered by webvirt or an SSH tunnel are refused there (use the built-in proxy).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webvirt.settings")
django.setup()

from django.conf import settings  # noqa: E402
from websockify.auth_plugins import AuthenticationError  # noqa: E402
from websockify.websockifyserver import WebSockifyRequestHandler  # noqa: E402

from webvirt.accounts.models import AuditEntry  # noqa: E402
from webvirt.accounts.policy import Actor, Denied, client_address  # noqa: E402
from webvirt.consoles import services  # noqa: E402
from webvirt.domains.models import Domain  # noqa: E402
from webvirt.events.auth import host_allowed, parse_origin  # noqa: E402
from webvirt.virt.errors import VirtError  # noqa: E402

log = logging.getLogger(__name__)

# websockify forks one process per connection: what the token plugin found is kept here for the
# auth plugin, which runs right after it in the same process, and what that one let through for the
# gateway's request handler (gateway.py), which audits the session's end.
_taken: dict[str, Any] = {}
_opened: dict[str, Any] = {}


def _peer() -> str | None:
    """The socket peer of the connection this process handles (None for a UNIX socket).

    websockify hands its plugins the request headers only, and the audit trail needs the peer (a
    client can write anything into X-Forwarded-For). Its request handler, the one object that knows
    it, is the `self` of the frame that called the plugin: plain websockify and the gateway alike.
    """
    frame = sys._getframe(1)
    while frame is not None:
        handler = frame.f_locals.get("self")
        if isinstance(handler, WebSockifyRequestHandler):
            address = handler.client_address
            return str(address[0]) if isinstance(address, tuple) and address else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def opened_session() -> tuple[Actor, Domain] | None:
    """The (actor, domain) of the console this process opened, once TicketAuth let it through."""
    return (_opened["actor"], _opened["domain"]) if _opened else None


class TicketTokens:
    def __init__(self, src: str | None = None) -> None:
        self.source = src

    def lookup(self, token: str) -> tuple[str, int] | None:
        _taken.clear()
        data = services.take(token)
        if data is None or data.kind != "vnc":
            return None
        domain = Domain.objects.select_related("host").filter(pk=data.domain_id).first()
        if domain is None:
            return None
        try:
            endpoint = services.vnc_endpoint(domain)
        except VirtError as exc:
            log.info("console gateway: %s", exc.message)
            return None
        if endpoint.kind != "tcp" or endpoint.password:
            log.info("console gateway: %s needs the built-in proxy (%s)", domain, endpoint.kind)
            return None
        _taken.update(ticket=data, domain=domain)
        return endpoint.host, endpoint.port


class TicketAuth:
    def __init__(self, src: str | None = None) -> None:
        self.source = src

    def authenticate(self, headers: Any, target_host: str, target_port: int) -> None:
        data, domain = _taken.get("ticket"), _taken.get("domain")
        _taken.clear()
        if data is None or domain is None:
            raise AuthenticationError(response_code=403, response_msg="Forbidden")
        user, bound_to = _who(headers)
        forwarded = ", ".join(headers.get_all("X-Forwarded-For") or ())
        actor = Actor(user=user, address=client_address(_peer(), forwarded), via="gateway")
        try:
            if user is None or (user.pk, bound_to) != (data.user_id, data.binding):
                raise Denied(services.REFUSED)
            services.authorize(user, data)
        except Denied as exc:
            services.audit_open(actor, "vnc", domain, AuditEntry.REFUSED, exc.message)
            raise AuthenticationError(response_code=403, response_msg="Forbidden") from None
        services.audit_open(actor, "vnc", domain, AuditEntry.OK, f"opened through the gateway to {target_host}:"
                                                                 f"{target_port}")
        _opened.update(actor=actor, domain=domain)


def _who(headers: Any) -> tuple[Any, str]:
    """The user and ticket binding of a request: API token, or session cookie from an allowed Origin."""
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.utils.module_loading import import_string

    from webvirt.accounts.tokens import user_for_token

    origin = headers.get("Origin")
    if origin is not None and not _origin_allowed(origin, headers.get("Host") or ""):
        return None, ""
    authorization = headers.get("Authorization") or ""
    if authorization.lower().startswith("token "):
        key = authorization[6:].strip()
        return user_for_token(key), services.binding(token_key=key)
    if origin is None:
        return None, ""  # a cookie without an Origin is not a browser whose page we can check
    cookies = {}
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        cookies[name] = value
    session_key = cookies.get(settings.SESSION_COOKIE_NAME, "")
    if not session_key:
        return None, ""
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
    user_id = store.get(SESSION_KEY)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if user_id else None
    return user, services.binding(session_key=session_key)


def _origin_allowed(origin: str, host: str) -> bool:
    """May a page from `origin` use the gateway reached at `host` (its Host header)?

    One of CSRF_TRUSTED_ORIGINS, or a page on the same host name as the gateway: the gateway often
    listens on a port of its own (6080) beside the site whose pages open it, so, unlike the web
    processes (events/auth.py), it cannot ask for the same port or scheme. The Host must name this
    site (ALLOWED_HOSTS); the Origin is compared with it, so ALLOWED_HOSTS = "*" does not let every
    page in.
    """
    if not host_allowed(host):
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    page, own = parse_origin(origin), parse_origin(f"http://{host}")
    return page is not None and own is not None and page[1] == own[1]
