from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from webvirt.hosts.models import Host
from webvirt.ui import field_of

BOOT_ORDERS = [("cdrom,hd", "CD-ROM, then disk"), ("hd,cdrom", "Disk, then CD-ROM"), ("hd", "Disk only"),
               ("network,hd", "Network (PXE), then disk"), ("cdrom,hd,network", "CD-ROM, disk, network")]


def _choices(values: list[str], empty: str | None = None) -> list[tuple[str, str]]:
    return ([("", empty)] if empty is not None else []) + [(v, v) for v in values]


class HostForm(forms.Form):
    """Which host the new machine or the upload is for (the other fields depend on it)."""

    host = forms.ModelChoiceField(queryset=Host.objects.none(), empty_label=None)

    def __init__(self, *args: Any, hosts: QuerySet[Host] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field_of(self, "host", forms.ModelChoiceField).queryset = hosts if hosts is not None else Host.objects.none()


class InstallForm(forms.Form):
    name = forms.CharField(max_length=63)
    vcpus = forms.IntegerField(label="vCPUs", min_value=1, max_value=64, initial=1)
    memory_mib = forms.IntegerField(label="Memory (MiB)", min_value=16, initial=1024)
    disk_gib = forms.FloatField(label="Disk (GiB)", min_value=0.1, initial=10)
    pool = forms.ChoiceField(label="Pool for the disk")
    iso = forms.ChoiceField(label="ISO", required=False, help_text="Upload one first if it is not listed.")
    network = forms.ChoiceField(required=False)
    graphics = forms.ChoiceField(choices=[("vnc", "VNC"), ("spice", "SPICE"), ("none", "None (serial only)")])
    boot = forms.ChoiceField(label="Boot order", choices=BOOT_ORDERS)
    domain_type = forms.ChoiceField(label="Domain type", required=False)

    def __init__(self, *args: Any, choices: dict[str, list[str]] | None = None, kvm: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = choices or {"pools": [], "isos": [], "networks": []}
        field_of(self, "pool", forms.ChoiceField).choices = _choices(choices["pools"])
        field_of(self, "iso", forms.ChoiceField).choices = _choices(choices["isos"], "— none —")
        field_of(self, "network", forms.ChoiceField).choices = _choices(choices["networks"], "— no network interface —")
        field_of(self, "domain_type", forms.ChoiceField).choices = (
            [("", "kvm (hardware virtualisation)"), ("qemu", "qemu (emulation)")]
            if kvm else [("", "qemu (emulation: this host offers no KVM)")])


class UploadForm(forms.Form):
    pool = forms.ChoiceField()
    name = forms.CharField(max_length=63, required=False, help_text="The volume's name; the file's name if empty.")
    file = forms.FileField()

    def __init__(self, *args: Any, pools: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field_of(self, "pool", forms.ChoiceField).choices = _choices(pools or [])
