from __future__ import annotations

from typing import Any

from django import forms

from webvirt.domains.forms import XML_ATTRS
from webvirt.ui import field_of
from webvirt.virt.storagexml import POOL_LABELS, POOL_TYPES, VOLUME_FORMATS, PoolSpec


class PoolForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, widget=forms.TextInput(attrs={"autofocus": True}))
    type = forms.ChoiceField(choices=[(t, POOL_LABELS[t]) for t in POOL_TYPES], initial="dir")
    target_path = forms.CharField(label="Target path", required=False,
                                  widget=forms.TextInput(attrs={"placeholder": "/var/lib/libvirt/images/fast"}),
                                  help_text="dir: the directory; netfs: where to mount it; iscsi: /dev/disk/by-path; "
                                            "disk: /dev.")
    source_host = forms.CharField(label="Source host", required=False, help_text="netfs and iscsi: the server.")
    source_path = forms.CharField(label="Source path or device", required=False,
                                  help_text="netfs: the export (/srv/nfs/vm); iscsi: the target IQN; disk: the "
                                            "device (/dev/sdb); logical: a physical volume (optional).")
    source_name = forms.CharField(label="Volume group", required=False, help_text="logical: the LVM volume group.")
    xml = forms.CharField(label="…or the pool's XML", required=False, strip=False,
                          widget=forms.Textarea(attrs={**XML_ATTRS, "rows": 8, "placeholder": "<pool type='dir'>…"}),
                          help_text="When given, the fields above are ignored.")
    build = forms.BooleanField(label="Build it first (create the directory, or format the device)", required=False)
    start = forms.BooleanField(label="Start it now", required=False, initial=True)
    autostart = forms.BooleanField(label="Start it when the host boots", required=False)

    def __init__(self, *args: Any, types: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if types is not None:
            field_of(self, "type", forms.ChoiceField).choices = [(t, POOL_LABELS[t]) for t in types]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not (data.get("xml") or "").strip() and not (data.get("name") or "").strip():
            raise forms.ValidationError("Give the pool a name (or paste its XML).")
        return data

    def spec(self) -> PoolSpec | None:
        d = self.cleaned_data
        if (d.get("xml") or "").strip():
            return None
        return PoolSpec(name=d["name"], type=d["type"], target_path=d["target_path"], source_host=d["source_host"],
                        source_path=d["source_path"], source_name=d["source_name"])


class VolumeForm(forms.Form):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"placeholder": "disk1.qcow2"}))
    format = forms.ChoiceField(choices=[(f, f) for f in VOLUME_FORMATS])
    capacity_mib = forms.IntegerField(label="Size (MiB)", min_value=1, initial=1024)


class UploadForm(forms.Form):
    file = forms.FileField()
    name = forms.CharField(label="Volume name", required=False, help_text="The file's name when empty.")


class ResizeForm(forms.Form):
    capacity_mib = forms.IntegerField(label="New size (MiB)", min_value=1)


class CloneForm(forms.Form):
    name = forms.CharField(label="Name of the copy", max_length=200)


class PoolDeleteForm(forms.Form):
    delete_volumes = forms.BooleanField(required=False, label="Also delete every volume in it (cannot be undone)")
