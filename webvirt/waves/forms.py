"""The form that schedules a wave: sensible defaults (next full hour, three hours, linked)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from webvirt.catalog.models import Template
from webvirt.waves import services

LOCAL = "%Y-%m-%dT%H:%M"
FORMATS = [LOCAL, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]  # seconds for scripts and tests; people pick minutes


def _when() -> forms.DateTimeInput:
    # step 1: a time with seconds (typed, or set by a script) passes the browser's own check.
    return forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format=LOCAL)


class WaveForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Say what it is for, e.g. Networks exam, group B.")
    template = forms.ModelChoiceField(queryset=Template.objects.select_related("host"))
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                   help_text="Its members when the wave starts each get machines.")
    users = forms.ModelMultipleChoiceField(queryset=get_user_model().objects.filter(is_active=True)
                                           .order_by("username"), required=False,
                                           help_text="And/or these people.")
    per_user = forms.IntegerField(label="Machines per person", min_value=1, max_value=services.MAX_PER_USER,
                                  initial=1)
    start_at = forms.DateTimeField(label="Start", input_formats=FORMATS,
                                   widget=_when())
    end_at = forms.DateTimeField(label="End", input_formats=FORMATS,
                                 widget=_when(),
                                 help_text="The machines are removed with their disks at this time.")
    name_pattern = forms.CharField(max_length=80, initial="exam-{n:02}",
                                   help_text="Machine names: one {n}, {n:02} or {n:03} where the number goes.")
    mode = forms.ChoiceField(choices=[("linked", "linked (fast, overlays on the template's disks)"),
                                      ("full", "full (independent copies)")], initial="linked")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        start = (timezone.localtime() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        self.fields["start_at"].initial = start
        self.fields["end_at"].initial = start + timedelta(hours=3)

    def to_data(self) -> services.WaveData:
        d = self.cleaned_data
        return services.WaveData(name=d["name"], template=d["template"], start_at=d["start_at"],
                                 end_at=d["end_at"], name_pattern=d["name_pattern"], group=d["group"],
                                 users=list(d["users"]), per_user=d["per_user"], mode=d["mode"])
