"""The audit trail (an append-only record of every change made through webvirt) and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"
    OUTCOMES = [(OK, "succeeded"), (REFUSED, "refused"), (FAILED, "failed")]

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Kept as text too, so the trail still says who after a user is deleted.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=16, blank=True)  # ui, api, task, cli
    outcome = models.CharField(max_length=8, choices=OUTCOMES, db_index=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.object_repr}: {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError("Audit entries are append-only.")


class ApiToken(models.Model):
    """A key for scripts (`Authorization: Token <key>`), kept only as a SHA-256 digest (webvirt.accounts.tokens).

    The key itself is shown once, when the token is made; `prefix` (its first characters) lets its
    owner tell which one a script uses without the database holding anything that authenticates.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=8)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    # The key itself, never saved: set on an instance only while it is at hand (just made, or just presented by
    # a request, whose console tickets are bound to it).
    key: str

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name or 'token'} ({self.prefix}…)"

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or timezone.now())


class SshKey(models.Model):
    """One of a user's SSH public keys, which cloud-init puts into the machines cloned for them.

    `public_key` is the normalised one-line form ("type base64 [comment]") that authorized_keys takes;
    webvirt.accounts.sshkeys checks a key before it is saved and computes its fingerprint.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField()
    fingerprint = models.CharField(max_length=60)  # "SHA256:<base64>", as `ssh-keygen -l` prints it
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "SSH key"
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="sshkey_unique_fingerprint_per_user"),
            models.UniqueConstraint(fields=["user", "name"], name="sshkey_unique_name_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"

    @property
    def key_type(self) -> str:
        """The key's algorithm as its line names it: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256..."""
        return self.public_key.split(" ", 1)[0]


class ChangeCounter(models.Model):
    """One row: for each table that kept answers are read from, a number the database bumps whenever the
    table changes (webvirt.changes, whose triggers write it; nothing else does). A column per table, named
    after it (webvirt.changes.WATCHED)."""

    domains_domain = models.BigIntegerField()
    hosts_host = models.BigIntegerField()
    auth_user = models.BigIntegerField()
    accounts_apitoken = models.BigIntegerField()
