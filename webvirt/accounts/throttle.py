"""Refusing sign-ins and API tokens after too many failures: per client address and per user name.

Failures are counted in Redis, so every web process sees the same counts: a fixed window per
counter that starts with its first failure (INCR, then EXPIRE NX). After WEBVIRT_THROTTLE_FAILURES
failures within the window, attempts from that address (any kind) or for that user name (sign-ins)
are refused until the window ends, even with the right password or a valid token: telling those
apart would tell an attacker which guess was right.

Counted: failed sign-ins (Django's user_login_failed, whichever view called authenticate()) and
bad `Authorization: Token` headers on the API. Refused: the login page (views.ThrottledLoginView,
the only one: the admin's sends signed-out visitors there) and API tokens (tokens.py). One audit
entry is written per throttled counter and window (the first refusal), not per refused attempt, so
an attacker cannot flood the audit trail.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from webvirt import kv
from webvirt.accounts.audit import Target, record
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor

log = logging.getLogger(__name__)

ADDRESS = "address"
USER = "user"
REASONS = {ADDRESS: "Too many failed sign-ins from this address.",
           USER: "Too many failed sign-ins for this user name."}


@dataclass(frozen=True)
class Block:
    """Why an attempt is refused, and for how many more seconds."""

    subject: str  # ADDRESS or USER
    key: str
    wait: int

    @property
    def reason(self) -> str:
        return REASONS[self.subject]

    @property
    def message(self) -> str:
        return f"{self.reason[:-1]}; wait a minute and try again."


def _key(subject: str, value: str) -> str:
    # Hashed: user names and addresses can be long or odd, and need not sit in Redis as they are.
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{settings.REDIS_PREFIX}:authfail:{subject}:{digest}"


def _keys(address: str | None, username: str | None) -> list[tuple[str, str]]:
    keys = [(ADDRESS, _key(ADDRESS, address or "unknown"))]
    if username is not None and username.strip():
        keys.append((USER, _key(USER, username.strip().lower())))
    return keys


def blocked(address: str | None, username: str | None = None) -> Block | None:
    """The reason attempts from `address` (for `username`) are refused now, or None."""
    keys = _keys(address, username)
    try:
        counts = kv.client().mget([key for _subject, key in keys])
        for (subject, key), count in zip(keys, counts, strict=True):
            if count is not None and int(count) >= settings.WEBVIRT_THROTTLE_FAILURES:
                ttl = kv.client().ttl(key)
                return Block(subject, key, ttl if ttl > 0 else settings.WEBVIRT_THROTTLE_WINDOW)
    except redis.RedisError as exc:
        # Sign-in must not depend on the counters: without Redis, nothing is refused (and it says so).
        log.warning("sign-in throttle unavailable, not refusing: %s", exc)
    return None


def failed(address: str | None, username: str | None = None) -> None:
    """Count one failed attempt from `address` (for `username`)."""
    try:
        with kv.client().pipeline() as pipe:
            for _subject, key in _keys(address, username):
                pipe.incr(key)
                pipe.expire(key, settings.WEBVIRT_THROTTLE_WINDOW, nx=True)  # the window starts once
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("sign-in throttle unavailable, failure not counted: %s", exc)


def audit(actor: Actor, action: str, block: Block, username: str = "") -> None:
    """Record a refusal in the audit trail, once per throttled counter and window."""
    try:
        first = kv.client().set(f"{block.key}:audited", "1", nx=True, ex=max(block.wait, 1))
    except redis.RedisError:
        first = True
    if not first:
        return
    detail = f"{block.reason} Further attempts are refused for {block.wait} s without another entry."
    record(actor, action, Target(object_type="user" if username else "", object_repr=username[:200]),
           AuditEntry.REFUSED, detail)


@receiver(user_login_failed)
def count_failed_sign_in(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """Every failed authenticate() of a web request counts, whichever form it came from."""
    if request is None:
        return  # not a sign-in over the web (a script calling authenticate() itself)
    failed(Actor.from_request(request).address, credentials.get("username") or "")

