"""The state cache: one row per domain per host. Lists and the API's list read only from here."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from webvirt.hosts.models import Host
from webvirt.virt.domains import STATE_LABELS


class Domain(models.Model):
    STATES = [(key, label) for key, label in STATE_LABELS.items()]

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="domains")
    uuid = models.CharField(max_length=36)
    name = models.CharField(max_length=200, db_index=True)
    state = models.CharField(max_length=12, choices=STATES, default="nostate", db_index=True)
    reason = models.CharField(max_length=32, blank=True)
    vcpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveIntegerField(default=0)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    graphics = models.CharField(max_length=16, blank=True)
    state_changed = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)
    # Ownership and provenance: set by webvirt (cloning), never by a resynchronisation.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="owned_domains")
    template = models.ForeignKey("catalog.Template", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="clones")
    linked = models.BooleanField(default=False, help_text="Its disks are overlays on the template's.")
    is_template = models.BooleanField(default=False, help_text="A template's source; it cannot be started.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="domains")
    disk_gib = models.FloatField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Last known IP addresses [{ip, prefix, family, mac, sources: [lease|agent|arp]}], so lists never ask libvirt.
    addresses = models.JSONField(default=list, blank=True)
    addresses_updated = models.DateTimeField(null=True, blank=True)
    # The latest usage sample (webvirt.metrics), so the list sorts by them without reading the history.
    cpu_percent = models.FloatField(null=True, blank=True)
    memory_used_mib = models.FloatField(null=True, blank=True)
    # Set while a migration job moves the domain there: the row follows the domain (same id, owner,
    # expiry, history) instead of being removed on the source and made anew on the destination.
    migrating_to = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name", "host__name"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="domain_unique_per_host")]
        indexes = [models.Index(fields=["host", "name"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("domains:detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in {"running", "blocked", "paused", "shutdown", "pmsuspended"}
