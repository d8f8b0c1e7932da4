from __future__ import annotations

from django import forms

from webvirt.virt.snapshots import KINDS

KIND_LABELS = {"auto": "Let webvirt choose", "internal": "Internal (inside the qcow2 disks)",
               "external": "External, disk-only (new overlay files)"}


class TakeForm(forms.Form):
    name = forms.CharField(max_length=63, required=False, help_text="Empty: the date and time.")
    description = forms.CharField(max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    memory = forms.BooleanField(required=False, label="Include memory",
                                help_text="A running domain comes back running, exactly where it was.")
    kind = forms.ChoiceField(choices=[(k, KIND_LABELS[k]) for k in KINDS], initial="auto")


class DeleteForm(forms.Form):
    children = forms.BooleanField(required=False, label="Also delete the snapshots taken after it on this branch")
