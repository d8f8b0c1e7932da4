"""The one set of LDAP settings, edited by an administrator on People → LDAP.

The bind password is stored encrypted (webvirt.crypto, like host credentials) and never leaves the
server again. The CA certificate is public and kept as the PEM text the administrator pasted.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from webvirt import crypto

SINGLETON = 1
DEFAULT_USER_FILTER = "(uid=%(user)s)"
DEFAULT_TIMEOUT = 5


class LdapSettings(models.Model):
    GROUP_OF_NAMES = "groupOfNames"
    POSIX_GROUP = "posixGroup"
    GROUP_TYPES = [(GROUP_OF_NAMES, "groupOfNames (members by DN in 'member')"),
                   (POSIX_GROUP, "posixGroup (members by user name in 'memberUid')")]

    enabled = models.BooleanField(default=False)
    server_uri = models.CharField(max_length=500, blank=True)
    start_tls = models.BooleanField(default=False)
    ca_certificate = models.TextField(blank=True)
    bind_dn = models.CharField(max_length=500, blank=True)
    bind_password_encrypted = models.TextField(blank=True, editable=False)
    user_search_base = models.CharField(max_length=500, blank=True)
    user_filter = models.CharField(max_length=500, default=DEFAULT_USER_FILTER)
    first_name_attribute = models.CharField(max_length=100, default="givenName", blank=True)
    last_name_attribute = models.CharField(max_length=100, default="sn", blank=True)
    email_attribute = models.CharField(max_length=100, default="mail", blank=True)
    group_search_base = models.CharField(max_length=500, blank=True)
    group_type = models.CharField(max_length=20, choices=GROUP_TYPES, default=GROUP_OF_NAMES)
    # Parsed by webvirt.accounts.groupsync.parse: `outside group => webvirt group` lines, admin group names.
    group_mapping = models.TextField(blank=True)
    admin_groups = models.TextField(blank=True)
    timeout = models.PositiveSmallIntegerField(default=DEFAULT_TIMEOUT)  # seconds, per network step
    # The last time signing someone in failed because of the server (not a wrong password), and why.
    last_problem = models.CharField(max_length=500, blank=True)
    last_problem_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "LDAP settings"
        verbose_name_plural = "LDAP settings"

    def __str__(self) -> str:
        return "LDAP settings"

    def save(self, **kwargs: Any) -> None:
        self.pk = SINGLETON  # one row, whoever saves it
        super().save(**kwargs)

    @classmethod
    def load(cls) -> LdapSettings:
        """The stored settings, or the defaults (unsaved, disabled) before an administrator saved any."""
        return cls.objects.filter(pk=SINGLETON).first() or cls(pk=SINGLETON)

    @property
    def has_password(self) -> bool:
        return bool(self.bind_password_encrypted)

    def set_password(self, plain: str) -> None:
        self.bind_password_encrypted = crypto.encrypt(plain)

    def password(self) -> str:
        return crypto.decrypt(self.bind_password_encrypted)

    @property
    def ready(self) -> bool:
        """Enabled, and complete enough to look someone up."""
        return self.enabled and bool(self.server_uri and self.user_search_base and self.user_filter)
