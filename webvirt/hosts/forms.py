from __future__ import annotations

from typing import Any

from django import forms

from webvirt.hosts.models import Host
from webvirt.hosts.services import HostData


class SecretTextarea(forms.Textarea):
    """A textarea that, like PasswordInput, never renders a value: a form shown again after an error
    must not put the private key it was given back into the page."""

    def format_value(self, value: object) -> None:
        return None


class HostForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))
    uri = forms.CharField(label="libvirt URI", max_length=500,
                          help_text="qemu:///system, qemu+ssh://user@host/system, qemu+tcp://host/system, "
                                    "qemu+tls://host/system or test+unix:///default",
                          widget=forms.TextInput(attrs={"placeholder": "qemu:///system", "spellcheck": "false"}))
    description = forms.CharField(max_length=200, required=False)
    username = forms.CharField(label="SASL user", max_length=100, required=False,
                               help_text="For qemu+tcp:// hosts that ask for a user name and password.")
    password = forms.CharField(label="SASL password", required=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))
    ssh_key = forms.CharField(label="SSH private key", required=False,
                              widget=SecretTextarea(attrs={"rows": 4, "spellcheck": "false",
                                                            "placeholder": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
                              help_text="For qemu+ssh:// hosts. Stored encrypted; never shown again.")
    clear_credentials = forms.BooleanField(label="Remove the stored password and key", required=False)
    migration_uri = forms.CharField(label="Migration address", max_length=200, required=False,
                                    help_text="Where other hosts send migrating memory and disks, e.g. "
                                              "tcp://10.0.0.5. Empty: the host's name.")

    def __init__(self, *args: Any, host: Host | None = None, **kwargs: Any) -> None:
        if host is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": host.name, "uri": host.uri, "description": host.description,
                                 "username": host.username, "migration_uri": host.migration_uri}
        super().__init__(*args, **kwargs)
        self.host = host
        if host is None:
            del self.fields["clear_credentials"]
        else:
            for field, present in (("password", host.has_password), ("ssh_key", host.has_ssh_key)):
                if present:
                    # A stored secret is only ever sent to the URI it was given for (services.update_host).
                    self.fields[field].help_text = ("A value is stored. Leave empty to keep it. Enter it again "
                                                    "if you change the URI.")

    def to_data(self) -> HostData:
        return HostData(**{k: v for k, v in self.cleaned_data.items() if k in HostData.__dataclass_fields__})
