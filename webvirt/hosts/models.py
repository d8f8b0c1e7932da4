"""Registered libvirt hosts. Credentials are stored encrypted and never leave the server."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone

from webvirt import crypto
from webvirt.virt import errors
from webvirt.virt.connection import Target
from webvirt.virt.errors import VirtError


class Host(models.Model):
    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    STATUSES = [(UNKNOWN, "unknown"), (ONLINE, "online"), (OFFLINE, "offline")]

    name = models.CharField(max_length=100, unique=True)
    uri = models.CharField("libvirt URI", max_length=500)
    description = models.CharField(max_length=200, blank=True)
    username = models.CharField(max_length=100, blank=True, help_text="SASL user for qemu+tcp:// hosts.")
    password_encrypted = models.TextField(blank=True, editable=False)
    ssh_key_encrypted = models.TextField(blank=True, editable=False)
    status = models.CharField(max_length=8, choices=STATUSES, default=UNKNOWN)
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed = models.DateTimeField(null=True, blank=True)
    # The last facts read from the host (versions, CPU, memory), shown while it is offline.
    facts = models.JSONField(default=dict, blank=True)
    facts_updated = models.DateTimeField(null=True, blank=True)
    # Maintenance: nothing new is placed here (clones, new machines, migrations) until an administrator
    # ends it; evacuating the host starts it.
    maintenance = models.BooleanField(default=False)
    migration_uri = models.CharField(
        "migration address", max_length=200, blank=True,
        help_text="Where other hosts send migrating memory and disks, e.g. tcp://10.0.0.5; empty: libvirt's "
                  "default (this host's name).")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("hosts:detail", args=[self.pk])

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    @property
    def has_ssh_key(self) -> bool:
        return bool(self.ssh_key_encrypted)

    def set_password(self, plain: str) -> None:
        self.password_encrypted = crypto.encrypt(plain)

    def set_ssh_key(self, plain: str) -> None:
        self.ssh_key_encrypted = crypto.encrypt(plain)

    def record_status(self, online: bool, reason: str = "") -> None:
        """Record whether the host answers, touching the row only when something changed."""
        status = self.ONLINE if online else self.OFFLINE
        if self.status == status and self.status_reason == reason:
            return
        changed = self.status != status
        self.status, self.status_reason = status, reason[:500]
        fields = ["status", "status_reason"]
        if changed:
            self.status_changed = timezone.now()
            fields.append("status_changed")
        Host.objects.filter(pk=self.pk).update(**{f: getattr(self, f) for f in fields})

    def refuse_placing(self) -> None:
        """Nothing new goes onto a host in maintenance."""
        if self.maintenance:
            raise VirtError(f"Host {self.name} is in maintenance: nothing new is placed on it until an administrator "
                            "ends that mode.", errors.STATE)

    def target(self) -> Target:
        """How the connection manager reaches this host.

        The cache slot changes whenever the host is edited, so every process (web, workers)
        stops using a connection opened with the old URI or credentials.
        """
        version = self.updated.strftime("%Y%m%d%H%M%S%f") if self.updated else "new"
        return Target(key=f"host-{self.pk}@{version}", uri=self.uri, name=self.name, username=self.username,
                      password=crypto.decrypt(self.password_encrypted),
                      ssh_key=crypto.decrypt(self.ssh_key_encrypted))
