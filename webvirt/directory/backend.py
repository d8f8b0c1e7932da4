"""Signing people in with their directory account: django-auth-ldap, configured from the settings row.

Listed in AUTHENTICATION_BACKENDS after Django's ModelBackend, so a local account signs in first and
never depends on the directory. This backend does nothing (answers None) while LDAP sign-in is off
or incomplete. On a sign-in through it:

- the user is looked up with the user search and bound as with their password; a wrong password is
  the login page's ordinary error;
- a new user is created (no local password) with the mapped name and e-mail, audited as
  user.created via ldap; an existing account of that name signs in (people imported from a CSV file
  or made on the People page), except a local administrator with a password of its own;
- the user's LDAP groups (their cn, and their DN) go through webvirt's mapping (groupsync.apply)
  at every sign-in: django-auth-ldap's own group mirroring stays off;
- a server that cannot be reached, or refuses the bind DN, fails the sign-in like a wrong password
  would, and the reason is logged and kept on the settings page (services.record_problem): never a
  500 or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import ldap  # type: ignore[import-untyped]
from django.contrib.auth import get_user_model
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend, ldap_error, populate_user  # type: ignore[import-untyped]
from django_auth_ldap.config import LDAPSettings  # type: ignore[import-untyped]

from webvirt.accounts import groupsync
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.directory import services
from webvirt.directory.models import LdapSettings

log = logging.getLogger(__name__)
SOURCE = "ldap"


def library_settings(row: LdapSettings) -> LDAPSettings:
    """django-auth-ldap's settings object, filled from the row instead of settings.py."""
    return LDAPSettings(LdapBackend.settings_prefix, {
        "SERVER_URI": row.server_uri,
        "START_TLS": row.start_tls,
        "BIND_DN": row.bind_dn,
        "BIND_PASSWORD": row.password() if row.bind_dn else "",
        "CONNECTION_OPTIONS": services.connection_options(row),
        "USER_SEARCH": services.user_search(row),
        "USER_ATTR_MAP": services.attribute_map(row),
        "GROUP_SEARCH": services.group_search(row),
        "GROUP_TYPE": services.group_type(row),
        "ALWAYS_UPDATE_USER": True,  # names and e-mail follow the directory
        "MIRROR_GROUPS": None,  # webvirt's mapping decides (groupsync)
        "FIND_GROUP_PERMS": False,  # webvirt's policy, not Django permissions, decides what people may do
        "CACHE_TIMEOUT": 0,
    })


class LdapBackend(LDAPBackend):
    # No AUTH_LDAP_* in settings.py: the database row is the only source (this prefix matches nothing).
    settings_prefix = "WEBVIRT_DIRECTORY_FROM_DATABASE_"
    _settings: LDAPSettings | None = None

    def __init__(self) -> None:
        self._row: LdapSettings | None = None

    @property
    def settings(self) -> LDAPSettings:
        if self._settings is None:
            self._settings = library_settings(self._row or LdapSettings.load())
        return self._settings

    @settings.setter
    def settings(self, value: LDAPSettings) -> None:
        self._settings = value

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        row = LdapSettings.load()
        if not row.ready or not username or not password:
            return None
        self._row, self._settings = row, None
        problem = services.tls_answers(row)
        if problem:
            services.record_problem(problem)
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and user.has_usable_password() and (user.is_staff or user.is_superuser):
            # People imported or made on the People page (with a password) sign in here under their name too;
            # a local administrator does not: a name in the directory must not open webvirt's own administrators.
            raise ldap_user.AuthenticationFailed(f"{username} is a local administrator with a password of its own")
        ldap_user.webvirt_built = built
        return user, built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        row = self._row or LdapSettings.load()
        if getattr(ldap_user, "webvirt_built", False):
            with audited(_actor(ldap_user, user), "user.create", user) as target:
                target.detail.append(f"first sign-in through LDAP ({ldap_user.dn})")
        if not user.is_active:
            return None  # deactivated in webvirt: the ordinary login error, like ModelBackend
        try:
            outside = (set(ldap_user.group_names) | set(ldap_user.group_dns)) if row.group_search_base else set()
        except ldap.LDAPError as exc:
            services.record_problem(f"Reading the groups of {user.get_username()} failed: "
                                    f"{services.describe(exc, row)}")
            return None  # signing in with stale groups could keep access the directory took away
        groupsync.apply(user, outside, services.mapping(row), SOURCE)
        services.clear_problem(row)
        return user

    def get_user(self, user_id: Any) -> Any:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        return user if user is not None and user.is_active else None

    def get_group_permissions(self, user: Any, obj: Any = None) -> set[str]:
        return set()

    def get_all_permissions(self, user: Any, obj: Any = None) -> set[str]:
        return set()


def _actor(ldap_user: Any, user: Any) -> Actor:
    request = getattr(ldap_user, "_request", None)
    actor = Actor.from_request(request, via=SOURCE) if request is not None else Actor(user=None, via=SOURCE)
    actor.user = user
    return actor


@receiver(ldap_error, sender=LdapBackend, dispatch_uid="webvirt.directory.server_problem")
def server_problem(sender: Any, context: str, exception: Exception, **kwargs: Any) -> None:
    """django-auth-ldap caught an LDAP error (it has logged it and failed the sign-in): keep the reason."""
    services.record_problem(services.describe(exception, LdapSettings.load()))


@receiver(populate_user, sender=LdapBackend, dispatch_uid="webvirt.directory.fit_fields")
def fit_fields(sender: Any, user: Any, ldap_user: Any, **kwargs: Any) -> None:
    """Directory values longer than the user model's columns are cut, not a failed (500) sign-in."""
    for name in ("first_name", "last_name", "email"):
        limit = user._meta.get_field(name).max_length
        value = getattr(user, name) or ""
        if limit and len(value) > limit:
            setattr(user, name, value[:limit])
