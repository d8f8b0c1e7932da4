from __future__ import annotations

from typing import Any

from django import forms

from webvirt.hosts.models import Host
from webvirt.migration.services import MoveRequest
from webvirt.ui import field_of
from webvirt.virt.migration import COPY_ALL, COPY_INC, SHARED

STORAGE_CHOICES = [
    (SHARED, "Shared: both hosts see the disks at the same paths; only memory moves"),
    (COPY_ALL, "Copy all: copy every disk whole (a linked clone arrives flattened)"),
    (COPY_INC, "Copy changes: copy a linked clone's own overlay; its template's disk must be there already"),
]


class HostChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        """A destination as the list shows it: what keeps a host from taking the domain is said up front."""
        notes = [text for text, applies in (("offline", obj.status == Host.OFFLINE),
                                            ("in maintenance", obj.maintenance)) if applies]
        return f"{obj.name} ({', '.join(notes)})" if notes else str(obj.name)


class MigrateForm(forms.Form):
    host = HostChoiceField(queryset=Host.objects.none(), label="Destination host", empty_label=None)
    live = forms.BooleanField(required=False, label="Live (the domain keeps running while it moves)")
    storage = forms.ChoiceField(choices=STORAGE_CHOICES, widget=forms.RadioSelect, initial=SHARED)
    max_downtime_ms = forms.IntegerField(label="Maximum downtime (ms)", min_value=10, max_value=10_000, initial=300,
                                         help_text="Raised step by step (up to 2 s) if the move stops converging.")
    bandwidth_mib_s = forms.IntegerField(label="Bandwidth limit (MiB/s)", min_value=1, max_value=100_000,
                                         required=False, help_text="Empty: as fast as the network allows.")

    def __init__(self, *args: Any, hosts: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field_of(self, "host", forms.ModelChoiceField).queryset = hosts

    def request(self) -> MoveRequest:
        return MoveRequest(**self.cleaned_data)
