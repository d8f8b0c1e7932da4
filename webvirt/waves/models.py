"""Scheduled clone waves: a template's machines for a group of people, from a start time to an end time."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.urls import reverse

from webvirt.catalog.models import Template


class Wave(models.Model):
    SCHEDULED, RUNNING, ENDED, CANCELLED, FAILED = "scheduled", "running", "ended", "cancelled", "failed"
    STATES = [(s, s) for s in (SCHEDULED, RUNNING, ENDED, CANCELLED, FAILED)]
    MODES = [("linked", "linked"), ("full", "full")]

    name = models.CharField(max_length=100)
    # Null once the template is deleted: a past wave stays in the list; a scheduled one fails at its start.
    template = models.ForeignKey(Template, null=True, on_delete=models.SET_NULL, related_name="waves")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="waves")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="waves")
    per_user = models.PositiveIntegerField(default=1)
    start_at = models.DateTimeField(db_index=True)
    end_at = models.DateTimeField()
    name_pattern = models.CharField(max_length=80)
    mode = models.CharField(max_length=8, choices=MODES, default="linked")
    state = models.CharField(max_length=10, choices=STATES, default=SCHEDULED, db_index=True)
    # Why it failed (the sentence of the check that refused it at its start), or what happened.
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    ended = models.DateTimeField(null=True, blank=True)
    # Counts, kept by the tick: what the clone jobs made, what runs, what failed, what has booted (as the
    # clone jobs' boot checks report it).
    planned = models.PositiveIntegerField(default=0)
    made = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    booted = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # The clone jobs that made its machines (their ids); the machines are the domains of these jobs.
    jobs = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-start_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("waves:list") + f"#wave-{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.state in (self.SCHEDULED, self.RUNNING)
