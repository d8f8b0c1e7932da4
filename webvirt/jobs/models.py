"""A Job row for every long operation: what, for whom, how far, and what it created on the way."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from webvirt.hosts.models import Host


class Job(models.Model):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STATES = [(QUEUED, "queued"), (RUNNING, "running"), (SUCCEEDED, "succeeded"), (FAILED, "failed"),
              (CANCELLED, "cancelled")]
    ACTIVE = (QUEUED, RUNNING)
    SECRET_PARAMS = frozenset({"password_hash"})

    kind = models.CharField(max_length=32, db_index=True)
    title = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="jobs")
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    # What the job was asked to do. Keys in SECRET_PARAMS (a password's hash) are the runner's only: never shown.
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED, db_index=True)
    progress = models.FloatField(default=0)
    message = models.CharField(max_length=300, blank=True)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Quota held by this job while it runs: {"instances", "vcpus", "memory_mib", "disk_gib"}.
    reserved = models.JSONField(default=dict, blank=True)
    # Objects created on hosts, recorded before each is made, so that a cancelled, failed or
    # killed job can remove them: [{"kind": "volume"|"domain", "host": id, "key": path|uuid}].
    created_objects = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=100, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.pk])

    @property
    def shown_params(self) -> dict:
        """The params without their secrets, for the API and pages."""
        return {k: v for k, v in self.params.items() if k not in self.SECRET_PARAMS}

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        from django.utils import timezone

        return ((self.finished or timezone.now()) - self.started).total_seconds()
