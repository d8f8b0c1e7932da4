"""Sign-in through an OpenID Connect provider: mozilla-django-oidc's backend, configured from the
OidcSettings row instead of Django's settings.

The library does the authorization code flow (state, nonce, PKCE, the code exchanged at the token
endpoint with the client secret, the ID token's RS256 signature checked against the provider's JWKS).
What webvirt adds:
- the ID token's issuer, audience, expiry and issue time are checked too (the library skips some);
- the user is found or created by the username claim, never by e-mail; a deactivated account, or an
  administrator account with a local password, is not signed in (a name at the provider does not open a
  local administrator's account);
- the groups claim is applied through webvirt.accounts.groupsync at every sign-in;
- a refused sign-in carries a sentence for the login page (`REFUSAL` on the request), never a 500.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError
from mozilla_django_oidc.auth import OIDCAuthenticationBackend  # type: ignore[import-untyped]
from mozilla_django_oidc.utils import import_from_settings  # type: ignore[import-untyped]

from webvirt.accounts import groupsync
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.oidc.models import OidcSettings
from webvirt.oidc.services import SIGNING_ALGORITHM, TIMEOUT
from webvirt.virt import errors
from webvirt.virt.errors import VirtError, quote

log = logging.getLogger(__name__)

SOURCE = "oidc"  # the audit trail's `via`, and groupsync's source
LEEWAY = 30  # seconds the clocks of this server and the provider may differ
REFUSAL = "oidc_refusal"  # the request attribute the callback view reads the reason from
CALLBACK = "oidc_signin:callback"
# The library's settings the backend keeps as attributes (its own __init__ would read them).
ATTRIBUTES = ("OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT", "OIDC_RP_CLIENT_ID",
              "OIDC_RP_CLIENT_SECRET", "OIDC_RP_SIGN_ALGO", "OIDC_RP_IDP_SIGN_KEY")


def library_setting(config: OidcSettings, name: str, *default: Any) -> Any:
    """What mozilla-django-oidc asks Django's settings for, answered from the stored settings."""
    if name == "OIDC_RP_CLIENT_SECRET":
        return config.secret()
    fixed = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": config.authorization_endpoint,
        "OIDC_OP_TOKEN_ENDPOINT": config.token_endpoint,
        "OIDC_OP_USER_ENDPOINT": config.userinfo_endpoint,
        "OIDC_OP_JWKS_ENDPOINT": config.jwks_uri,
        "OIDC_RP_CLIENT_ID": config.client_id,
        "OIDC_RP_SCOPES": config.scopes,
        "OIDC_RP_SIGN_ALGO": SIGNING_ALGORITHM,
        "OIDC_RP_IDP_SIGN_KEY": None,  # the provider's keys come from its JWKS, fetched at each sign-in
        "OIDC_ALLOW_UNSECURED_JWT": False,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_VERIFY_SSL": True,
        "OIDC_TIMEOUT": TIMEOUT,
        "OIDC_PROXY": None,
        "OIDC_TOKEN_USE_BASIC_AUTH": False,
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
        "OIDC_CREATE_USER": True,
        "OIDC_AUTHENTICATION_CALLBACK_URL": CALLBACK,
        "LOGIN_REDIRECT_URL_FAILURE": settings.LOGIN_URL,
    }
    if name in fixed:
        return fixed[name]
    return import_from_settings(name, *default)


def sentence_for(exc: Exception) -> str:
    """Why a sign-in failed, for the person on the login page (the details go to the log)."""
    if isinstance(exc, VirtError):
        return exc.message
    if isinstance(exc, jwt.ExpiredSignatureError):
        return ("The identity provider's sign-in token has expired, so it was refused. Sign in again; if this "
                "keeps happening, the clocks of webvirt's server and the provider disagree.")
    if isinstance(exc, jwt.DecodeError):  # a bad signature too (InvalidSignatureError)
        return "The sign-in token's signature does not match the identity provider's keys, so it was refused."
    if isinstance(exc, jwt.InvalidTokenError):
        return f"The identity provider's sign-in token is not valid for webvirt ({exc}), so it was refused."
    if isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code in (400, 401):
        return ("The identity provider refused webvirt's request for the sign-in token: the client id or secret "
                "on the OpenID Connect settings page may be wrong, or the sign-in took too long. Try again, or ask "
                "an administrator.")
    if isinstance(exc, requests.RequestException):
        return "The identity provider could not be reached to complete the sign-in. Try again in a moment."
    if isinstance(exc, IntegrityError):
        return "Your account was being created by another sign-in at the same moment. Sign in again."
    return f"The sign-in with the identity provider could not be completed ({exc})."


def _groups(claims: dict[str, Any], name: str) -> list[str]:
    """The outside groups a claim lists: a list of names, or one name."""
    value = claims.get(name) if name else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


class OidcBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, reading the OidcSettings row; does nothing while it is not enabled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Not the library's __init__: it reads every setting at once, and Django makes a backend for each
        # request of a signed-in user (get_user); the row is read only when a sign-in needs it.
        self.UserModel = get_user_model()

    @cached_property
    def config(self) -> OidcSettings:
        return OidcSettings.load()

    def get_settings(self, attr: str, *args: Any) -> Any:
        return library_setting(self.config, attr, *args)

    def get_user(self, user_id: Any) -> Any:
        # Django's check (a deactivated user's session ends), which the library's get_user skips.
        return ModelBackend.get_user(self, user_id)

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        # Only the callback view signs in here (it passes the nonce); a password form passes by.
        if request is None or "nonce" not in kwargs or not self.config.ready:
            return None
        for name in ATTRIBUTES:
            setattr(self, name, self.get_settings(name))
        try:
            user = super().authenticate(request, **kwargs)
            if user is not None:
                return user
            reason = "The identity provider did not complete the sign-in. Try again."
        except (VirtError, SuspiciousOperation, jwt.PyJWTError, requests.RequestException, IntegrityError) as exc:
            log.warning("OpenID Connect sign-in refused: %s: %s", type(exc).__name__, exc)
            reason = sentence_for(exc)
        setattr(request, REFUSAL, reason)
        raise PermissionDenied(reason)  # Django stops here and counts a failed sign-in

    def verify_token(self, token: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise VirtError("The identity provider sent no ID token: the scopes in the OpenID Connect settings must "
                            "include openid.", errors.AUTH)
        claims: dict[str, Any] = super().verify_token(token, **kwargs)
        return claims

    def _verify_jws(self, payload: Any, key: Any) -> dict[str, Any]:
        """The ID token's claims once its RS256 signature, issuer, audience and times are checked."""
        algorithm = jwt.get_unverified_header(payload).get("alg")
        if algorithm != SIGNING_ALGORITHM:
            raise VirtError(f"The sign-in token is signed with {quote(str(algorithm), 20)}, not {SIGNING_ALGORITHM}, "
                            "so it was refused.", errors.AUTH)
        claims: dict[str, Any] = jwt.decode(
            payload, key, algorithms=[SIGNING_ALGORITHM], audience=self.OIDC_RP_CLIENT_ID, issuer=self.config.issuer,
            leeway=LEEWAY, options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise VirtError("The sign-in token was issued to another client, so it was refused.", errors.AUTH)
        return claims

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        if not self.OIDC_OP_USER_ENDPOINT:
            return {}  # a provider without one: the ID token's claims are all there is
        info = super().get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 5.3.4: the user information must be about the ID token's user.
        if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
            raise VirtError("The identity provider's user information is about someone else than its sign-in "
                            "token, so it was refused.", errors.AUTH)
        return info

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        username = self._username(claims)
        user = self.UserModel.objects.filter(username=username).first()
        if user is None:
            user = self._create(username, claims)
        else:
            self._refuse_unless_ours(user)
            self._update(user, claims)
        mapping = groupsync.parse(self.config.group_mapping, self.config.admin_groups)
        groupsync.apply(user, _groups(claims, self.config.groups_claim), mapping, SOURCE)
        return user

    def _username(self, claims: dict[str, Any]) -> str:
        name = self.config.username_claim
        value = claims.get(name)
        if not isinstance(value, str) or not value.strip():
            raise VirtError(f"The identity provider did not send the claim '{quote(name, 40)}', which webvirt takes "
                            "the user name from, so you could not be signed in. Ask an administrator to check the "
                            "username claim in the OpenID Connect settings.", errors.AUTH)
        value = value.strip()
        try:
            UnicodeUsernameValidator()(value)
        except ValidationError:
            value = ""
        if not value or len(value) > 150:
            raise VirtError(f"The user name '{quote(str(claims.get(name)), 40)}' sent by the identity provider is "
                            "not one webvirt accepts (letters, digits and @.+-_, at most 150 characters).",
                            errors.AUTH)
        return value

    def _refuse_unless_ours(self, user: Any) -> None:
        # People imported or made on the People page (with a password) sign in here under the same name; a
        # local administrator does not: a name at the provider must not open webvirt's own administrators.
        if user.has_usable_password() and (user.is_staff or user.is_superuser):
            raise VirtError(f"{user.get_username()} is an administrator account with its own password here, so the "
                            "identity provider cannot sign in to it. Sign in with that password instead.",
                            errors.AUTH)
        if not user.is_active:
            raise VirtError(f"The account {user.get_username()} is deactivated. Ask an administrator.", errors.AUTH)

    def _actor(self, user: Any = None) -> Actor:
        return Actor(user=user, address=Actor.from_request(self.request).address, via=SOURCE)

    def _create(self, username: str, claims: dict[str, Any]) -> Any:
        actor = self._actor()
        with audited(actor, "user.create") as target:
            target.set(kind="user", text=username)
            user = self.UserModel(username=username, **self._profile(claims))
            user.set_unusable_password()  # signs in through the provider only
            user.save()
            actor.user = user  # the entry names the new user as who acted
            target.set(user)
            target.detail.append(f"first sign-in through OpenID Connect ({self.config.issuer})")
        return user

    def _update(self, user: Any, claims: dict[str, Any]) -> None:
        """Name and e-mail as the provider says now; only what it sent, only when it changed."""
        changed = {name: value for name, value in self._profile(claims).items()
                   if value and getattr(user, name) != value}
        if not changed:
            return
        with audited(self._actor(user), "user.update", user) as target:
            for name, value in changed.items():
                setattr(user, name, value)
            user.save(update_fields=list(changed))
            target.detail.append(f"{', '.join(changed).replace('_', ' ')} from OpenID Connect")

    @staticmethod
    def _profile(claims: dict[str, Any]) -> dict[str, str]:
        def text(name: str, limit: int) -> str:
            value = claims.get(name)
            return value.strip()[:limit] if isinstance(value, str) else ""

        email = text("email", 254)
        try:
            validate_email(email)
        except ValidationError:
            email = ""
        first, last = text("given_name", 150), text("family_name", 150)
        if not (first or last):
            first, _, last = text("name", 301).partition(" ")
        return {"first_name": first[:150], "last_name": last[:150], "email": email}
