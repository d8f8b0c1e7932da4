"""Snapshots live in libvirt; webvirt keeps only what libvirt cannot tell: an internal snapshot's size."""

from __future__ import annotations

from django.db import models

from webvirt.domains.models import Domain


class SnapshotSize(models.Model):
    """How much an internal snapshot grew its domain's disks when webvirt took it (libvirt does not say)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="snapshot_sizes")
    name = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["domain", "name"], name="snapshot_size_unique")]

    def __str__(self) -> str:
        return f"{self.name} of {self.domain}"
