"""The one set of OpenID Connect settings, edited by an administrator on People → OpenID Connect.

The client secret is stored encrypted (webvirt.crypto, like host credentials) and never leaves the
server again; the provider's endpoints are copied from its discovery document when the settings are
saved, so a sign-in does not depend on fetching it.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from webvirt import crypto

DEFAULT_SCOPES = "openid email profile"
DEFAULT_USERNAME_CLAIM = "preferred_username"
DEFAULT_GROUPS_CLAIM = "groups"
DEFAULT_LABEL = "Sign in with OpenID Connect"
SINGLETON = 1


class OidcSettings(models.Model):
    enabled = models.BooleanField(default=False)
    button_label = models.CharField(max_length=100, default=DEFAULT_LABEL)
    discovery_url = models.CharField(max_length=500, blank=True)
    # Copied from the discovery document when the settings were saved.
    issuer = models.CharField(max_length=500, blank=True)
    authorization_endpoint = models.CharField(max_length=500, blank=True)
    token_endpoint = models.CharField(max_length=500, blank=True)
    userinfo_endpoint = models.CharField(max_length=500, blank=True)
    jwks_uri = models.CharField(max_length=500, blank=True)
    discovered = models.DateTimeField(null=True, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    scopes = models.CharField(max_length=300, default=DEFAULT_SCOPES)
    username_claim = models.CharField(max_length=100, default=DEFAULT_USERNAME_CLAIM)
    groups_claim = models.CharField(max_length=100, default=DEFAULT_GROUPS_CLAIM, blank=True)
    # Parsed by webvirt.accounts.groupsync.parse: `outside group => webvirt group` lines, admin group names.
    group_mapping = models.TextField(blank=True)
    admin_groups = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OpenID Connect settings"
        verbose_name_plural = "OpenID Connect settings"

    def __str__(self) -> str:
        return "OpenID Connect settings"

    def save(self, **kwargs: Any) -> None:
        self.pk = SINGLETON  # one row, whoever saves it
        super().save(**kwargs)

    @classmethod
    def load(cls) -> OidcSettings:
        """The stored settings, or the defaults (unsaved, disabled) before an administrator saved any."""
        return cls.objects.filter(pk=SINGLETON).first() or cls(pk=SINGLETON)

    @property
    def has_secret(self) -> bool:
        return bool(self.client_secret_encrypted)

    def set_secret(self, plain: str) -> None:
        self.client_secret_encrypted = crypto.encrypt(plain)

    def secret(self) -> str:
        return crypto.decrypt(self.client_secret_encrypted)

    @property
    def ready(self) -> bool:
        """Enabled, and complete enough to sign someone in."""
        # No userinfo endpoint is needed: the ID token's claims are used then.
        return self.enabled and all((self.authorization_endpoint, self.token_endpoint, self.jwks_uri,
                                     self.issuer, self.client_id, self.client_secret_encrypted))
