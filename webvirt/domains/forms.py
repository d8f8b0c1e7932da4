from __future__ import annotations

from django import forms

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

    def __init__(self, *args, hosts=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["host"].queryset = hosts if hosts is not None else Host.objects.none()

    def clean(self) -> dict:
        data = super().clean()
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
