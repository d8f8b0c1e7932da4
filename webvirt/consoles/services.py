"""Console tickets, shared by the API (issue), the console endpoints and the websockify gateway (redeem).

A ticket is 256 random bits kept in Redis for 30 s under `<prefix>:console:<sha256(ticket)>`, bound to
the user, the session or API token that asked for it, the domain and the console kind. Redeeming is
one atomic GETDEL, so a ticket opens at most one console; the policy is asked again at redemption.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from webvirt import kv
from webvirt.accounts import policy
from webvirt.accounts.audit import Target, record
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.virt import console as virt_console
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

KINDS = ("vnc", "serial")
TICKET_TTL = 30.0
ACTIVE_STATES = {"running", "blocked", "paused"}
REFUSED = "That console ticket is not valid: it is unknown, used, expired, or not yours. Open the console again."


def _key(ticket: str) -> str:
    # The ticket itself is not stored: whoever reads Redis cannot use what is there.
    return f"{settings.REDIS_PREFIX}:console:{hashlib.sha256(ticket.encode()).hexdigest()}"


def binding(*, session_key: str | None = None, token_key: str | None = None) -> str:
    """What a ticket is bound to besides the user: the browser session, or the script's API token."""
    if token_key:
        return "token:" + hashlib.sha256(token_key.encode()).hexdigest()
    if session_key:
        return "session:" + hashlib.sha256(session_key.encode()).hexdigest()
    return ""


@dataclass(frozen=True)
class Ticket:
    user_id: int
    binding: str
    domain_id: int
    kind: str
    expires: float


@dataclass(frozen=True)
class Issued:
    ticket: str
    path: str
    expires_at: datetime


def console_path(kind: str, domain_id: int, ticket: str) -> str:
    return f"/ws/console/{kind}/{domain_id}/?ticket={ticket}"


def check_available(domain: Domain, kind: str) -> None:
    """Fail early, with a sentence, when the cache already says the console cannot open."""
    if kind not in KINDS:
        raise VirtError(f"'{kind}' is not a console kind. Use 'vnc' or 'serial'.", errors.INVALID)
    if domain.state not in ACTIVE_STATES:
        raise VirtError(f"{domain.name} is {domain.get_state_display()}. Start it to use its console.", errors.STATE)
    if kind == "vnc" and domain.graphics and domain.graphics != "vnc":
        raise VirtError(f"{domain.name} has {domain.graphics} graphics, not VNC; use its serial console.",
                        errors.UNSUPPORTED)
    if kind == "vnc" and not domain.graphics:
        raise VirtError(f"{domain.name} has no graphical console. Use its serial console.", errors.UNSUPPORTED)


def issue(actor: Actor, domain: Domain, kind: str, bound_to: str, ttl: float = TICKET_TTL) -> Issued:
    """A new single-use ticket for `actor` to open `domain`'s console of `kind`."""
    try:
        policy.require(actor.user, policy.CONSOLE, domain)
    except Denied as exc:
        record(actor, f"console.{kind if kind in KINDS else 'open'}", _target(domain), AuditEntry.REFUSED,
               f"ticket refused: {exc.message}")
        raise
    check_available(domain, kind)
    if not bound_to:
        raise Denied("A console ticket needs a logged-in session or an API token.")
    ticket = secrets.token_urlsafe(32)
    expires = time.time() + ttl
    data = Ticket(user_id=actor.user.pk, binding=bound_to, domain_id=domain.pk, kind=kind, expires=expires)
    kv.client().set(_key(ticket), json.dumps(asdict(data)), px=max(1, int(ttl * 1000)))
    return Issued(ticket, console_path(kind, domain.pk, ticket), datetime.fromtimestamp(expires, UTC))


def take(ticket: str) -> Ticket | None:
    """Remove the ticket from Redis and return what it was issued for: it can be taken exactly once."""
    if not ticket or len(ticket) > 100:
        return None
    raw = kv.client().getdel(_key(ticket))
    if raw is None:
        return None
    data = Ticket(**json.loads(raw))
    return data if data.expires > time.time() else None


def redeem(ticket: str, user: Any, bound_to: str, kind: str, domain_id: int) -> Domain:
    """Check a presented ticket against who presents it and where; return the domain. Raises Denied."""
    data = take(ticket)
    if data is None or user is None or not user.is_authenticated:
        raise Denied(REFUSED)
    if (data.user_id, data.binding, data.kind, data.domain_id) != (user.pk, bound_to, kind, domain_id):
        raise Denied(REFUSED)
    return authorize(user, data)


def authorize(user: Any, data: Ticket) -> Domain:
    """The policy, asked again at the moment the console opens (rights may have changed since the ticket)."""
    domain = Domain.objects.select_related("host").filter(pk=data.domain_id).first()
    if domain is None:
        raise Denied(REFUSED)
    policy.require(user, policy.CONSOLE, domain)
    return domain


def _target(domain: Domain) -> Target:
    target = Target()
    target.set(domain)
    return target


def audit_open(actor: Actor, kind: str, domain: Domain | None, outcome: str, detail: str = "") -> None:
    record(actor, f"console.{kind}", _target(domain) if domain else Target(object_type="domain"), outcome, detail)


def audit_close(actor: Actor, kind: str, domain: Domain, started: float, sent: int, received: int,
                reason: str = "") -> None:
    """The end of a console session: how long it lasted and how many bytes went each way."""
    duration = time.monotonic() - started
    detail = (f"closed after {duration:.1f} s; {sent} bytes to the browser, {received} bytes from it"
              + (f"; {reason}" if reason else ""))
    record(actor, f"console.{kind}.close", _target(domain), AuditEntry.OK, detail)


def vnc_endpoint(domain: Domain) -> virt_console.VncEndpoint:
    return call(domain.host, lambda conn: virt_console.vnc_endpoint(conn, domain.uuid, domain.host.uri))


def screenshot_png(actor: Actor, domain: Domain) -> bytes:
    """The domain's screen now, as PNG (QEMU answers in PPM)."""
    policy.require(actor.user, policy.CONSOLE, domain)
    mime, data = call(domain.host, lambda conn: virt_console.screenshot(conn, domain.uuid), timeout=10)
    if mime == "image/png":
        return data
    return virt_console.ppm_to_png(data)
