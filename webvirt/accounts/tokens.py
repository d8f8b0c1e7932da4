"""API tokens: random keys shown once, stored as SHA-256 digests, optionally expiring.

A plain SHA-256 is enough here (no salt, no slow hash): keys are 256 random bits, so a stolen
digest cannot be guessed back, and a slow hash would cost every API request. The REST API
(ApiTokenAuthentication), WebSockets (events/auth.py) and the console gateway all look keys up
through `user_for_token`/`token_for_key`, so expiry and deactivated users are honoured everywhere.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.request import Request

from webvirt import changes
from webvirt.accounts import throttle
from webvirt.accounts.audit import audited
from webvirt.accounts.models import ApiToken
from webvirt.accounts.policy import Actor

KEY_BYTES = 32
PREFIX_LENGTH = 8
# last_used is written at most this often per token: a script polling every second costs no write each time.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_KEY_LENGTH = 200  # longer is not a key of ours; not worth hashing


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_token(user: Any, *, name: str = "", expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """A new token for `user` and its key: the only time the key exists outside the client."""
    key = secrets.token_urlsafe(KEY_BYTES)
    token = ApiToken.objects.create(user=user, name=name.strip()[:100], prefix=key[:PREFIX_LENGTH],
                                    digest=digest(key),
                                    expires=timezone.now() + expires_in if expires_in else None)
    return token, key


def token_for_key(key: str) -> ApiToken | None:
    """The live token whose key this is (not expired, its user active), or None."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    # Kept until a token or a user changes (webvirt.changes): a script's every request asks the same.
    key_digest = digest(key)
    token = changes.memo(("api-token", key_digest), lambda: _lookup(key_digest), changes.TOKENS)
    if token is not None:
        # Copies (a model's copy has its own attributes): the kept ones are shared by every request, and
        # this request sets the key, last_used and whatever Django caches on its user.
        user = copy.copy(token.user)
        token = copy.copy(token)
        token.user = user
    now = timezone.now()
    if token is None or token.expired(now) or not token.user.is_active:
        return None
    if token.last_used is None or now - token.last_used >= LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token


def _lookup(key_digest: str) -> ApiToken | None:
    try:
        # get(), not first(): the digest is unique, and an unordered lookup compiles a quarter faster.
        return ApiToken.objects.select_related("user").get(digest=key_digest)
    except ApiToken.DoesNotExist:
        return None


def user_for_token(key: str) -> Any:
    """The user an API token key authenticates, or None (unknown, expired, or the user deactivated)."""
    token = token_for_key(key)
    return token.user if token is not None else None


def issue(actor: Actor, user: Any, *, name: str = "", expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """Create a token for `user`, in the audit trail."""
    with audited(actor, "token.create") as target:
        token, key = create_token(user, name=name, expires_in=expires_in)
        target.set(token)
        target.detail.append(f"for {user.get_username()}, "
                             + (f"expires {token.expires:%Y-%m-%d %H:%M} UTC" if token.expires else "never expires"))
    return token, key


def revoke(actor: Actor, token: ApiToken) -> None:
    """Delete a token (it stops working at once), in the audit trail."""
    with audited(actor, "token.revoke", token) as target:
        target.detail.append(f"of {token.user.get_username()}")
        token.delete()


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` for the REST API, with failures counted per client address.

    DRF's TokenAuthentication parses the header and answers 401 with WWW-Authenticate; only the
    lookup is ours. While the client's address is throttled every token is refused with 429, valid
    or not, so that a guess that happens to be right is not told apart.
    """

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        # The Django request: asking DRF's request for .user here would start authentication again.
        actor = Actor(user=None, address=Actor.from_request(request._request).address, via="api")
        block = throttle.blocked(actor.address)
        if block is not None:
            throttle.audit(actor, "token.throttled", block)
            raise exceptions.Throttled(wait=block.wait, detail=block.reason)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.failed(actor.address)
            raise

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = token_for_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed("The API token is unknown, revoked or expired.")
        # The key as presented, for this request only (never saved): console tickets are bound to it.
        token.key = key
        return token.user, token
