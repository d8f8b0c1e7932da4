"""The audit trail: an append-only record of every change made through webvirt."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.pk is not None:
            raise PermissionError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError("Audit entries are append-only.")
