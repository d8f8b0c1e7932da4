"""The domain pages' forms: define, undefine, edit the XML, and the Devices panel's changes."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.db.models import QuerySet

from webvirt.hosts.models import Host

XML_ATTRS = {"rows": 28, "spellcheck": "false", "autocomplete": "off", "class": "code"}


class XMLForm(forms.Form):
    xml = forms.CharField(label="XML", widget=forms.Textarea(attrs=XML_ATTRS), strip=False)


class DefineForm(forms.Form):
    host = forms.ModelChoiceField(queryset=Host.objects.none(), empty_label=None)
    xml = forms.CharField(label="Domain XML", required=False, strip=False,
                          widget=forms.Textarea(attrs={**XML_ATTRS, "rows": 20, "placeholder": "<domain type='kvm'>…"}))
    xml_file = forms.FileField(label="…or upload an XML file", required=False)
    transient = forms.BooleanField(required=False, label="Create a transient domain (started now, gone when it stops)")

    def __init__(self, *args: Any, hosts: QuerySet[Host] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        host = cast(forms.ModelChoiceField, self.fields["host"])  # the field declared above, copied per form
        host.queryset = hosts if hosts is not None else Host.objects.none()

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        upload = data.get("xml_file")
        if upload:
            if upload.size > 1024 * 1024:
                raise forms.ValidationError("The uploaded file is larger than 1 MiB.")
            data["xml"] = upload.read().decode("utf-8", errors="replace")
        if not (data.get("xml") or "").strip():
            raise forms.ValidationError("Paste the domain XML or upload an XML file.")
        return data


class UndefineForm(forms.Form):
    delete_volumes = forms.BooleanField(required=False, label="Also delete the disk volumes listed above")


# The Devices panel: one form per change --------------------------------------------------------------
# Each says which arguments its change (a function of webvirt.domains.devices) takes after the actor
# and the domain, and what to tell the user once it is done. A bus or a model is not checked here:
# webvirt.virt.devices refuses an unknown one with a sentence that lists the choices.

class DeviceForm(forms.Form):
    def arguments(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def done(self, domain_name: str, result: Any) -> str:
        raise NotImplementedError


class AttachDiskForm(DeviceForm):
    volume = forms.CharField()
    bus = forms.CharField(required=False)
    readonly = forms.BooleanField(required=False)

    def arguments(self) -> tuple[str, str, bool]:
        d = self.cleaned_data
        return d["volume"], d["bus"] or "virtio", d["readonly"]

    def done(self, domain_name: str, result: Any) -> str:
        return f"{self.cleaned_data['volume']} is attached to {domain_name} as {result}."


class DetachDiskForm(DeviceForm):
    target = forms.CharField()

    def arguments(self) -> tuple[str]:
        return (self.cleaned_data["target"],)

    def done(self, domain_name: str, result: Any) -> str:
        return f"Disk {self.cleaned_data['target']} is detached from {domain_name}."


class AttachInterfaceForm(DeviceForm):
    network = forms.CharField()
    model = forms.CharField(required=False)

    def arguments(self) -> tuple[str, str]:
        return self.cleaned_data["network"], self.cleaned_data["model"] or "virtio"

    def done(self, domain_name: str, result: Any) -> str:
        return f"{domain_name} has a new interface {result} on {self.cleaned_data['network']}."


class DetachInterfaceForm(DeviceForm):
    mac = forms.CharField()

    def arguments(self) -> tuple[str]:
        return (self.cleaned_data["mac"],)

    def done(self, domain_name: str, result: Any) -> str:
        return f"Interface {self.cleaned_data['mac']} is detached from {domain_name}."


class MediaForm(DeviceForm):
    target = forms.CharField()
    path = forms.CharField(required=False)  # empty ejects

    def arguments(self) -> tuple[str, str]:
        return self.cleaned_data["target"], self.cleaned_data["path"]

    def done(self, domain_name: str, result: Any) -> str:
        path = self.cleaned_data["path"]
        return f"{self.cleaned_data['target']}: " + (f"{path} is inserted." if path else "ejected.")


# Bulk actions on the list -----------------------------------------------------------------------------

class BulkForm(forms.Form):
    """The list's bar of bulk actions: the ticked rows (`ids`), or every domain the list's filter matches
    (`scope=filter` with its search, host and state), and the arguments of the action asked for."""

    action = forms.CharField()
    scope = forms.ChoiceField(choices=[("ids", "the ticked domains"), ("filter", "all that match")], required=False)
    search = forms.CharField(required=False)
    host = forms.CharField(required=False)
    state = forms.CharField(required=False)
    snapshot_name = forms.CharField(required=False)
    expires_at = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def selection(self) -> dict[str, Any]:
        """`ids` or `filters`, as webvirt.domains.bulk.start takes them."""
        if self.cleaned_data["scope"] == "filter":
            return {"filters": {key: self.cleaned_data[key] for key in ("search", "host", "state")}}
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        return {"ids": [int(value) for value in raw if str(value).isdigit()]}

    def args(self) -> dict[str, Any]:
        action, data = self.cleaned_data["action"], self.cleaned_data
        if action == "snapshot":
            return {"name": data["snapshot_name"]}
        if action == "extend":
            return {"expires_at": data["expires_at"].isoformat() if data["expires_at"] else ""}
        return {}
