from __future__ import annotations

from typing import Any

from django import forms

from webvirt.accounts import groupsync
from webvirt.oidc.models import OidcSettings
from webvirt.oidc.services import WELL_KNOWN, SettingsData
from webvirt.virt.errors import VirtError

SECTIONS = {"enabled": "Login page", "discovery_url": "Provider", "username_claim": "Users and groups"}


class OidcSettingsForm(forms.Form):
    enabled = forms.BooleanField(label="Offer sign-in with OpenID Connect on the login page", required=False)
    button_label = forms.CharField(label="Button label", max_length=100,
                                   widget=forms.TextInput(attrs={"placeholder": "Sign in with Keycloak"}),
                                   help_text="The button below the password form, e.g. Sign in with Keycloak.")
    discovery_url = forms.CharField(
        label="Discovery URL", max_length=500, required=False,
        widget=forms.URLInput(attrs={"spellcheck": "false",
                                     "placeholder": f"https://sso.example.org/realms/school{WELL_KNOWN}"}),
        help_text="The provider's discovery document. It is fetched when you save, and its endpoints and keys are "
                  "what webvirt uses.")
    client_id = forms.CharField(label="Client id", max_length=255, required=False,
                                widget=forms.TextInput(attrs={"spellcheck": "false"}))
    client_secret = forms.CharField(
        label="Client secret", required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again.")
    scopes = forms.CharField(max_length=300, help_text="Separated by spaces; openid is required.")
    username_claim = forms.CharField(label="Username claim", max_length=100,
                                     help_text="The claim whose value is the webvirt user name.")
    groups_claim = forms.CharField(label="Groups claim", max_length=100, required=False,
                                   help_text="The claim listing the user's groups at the provider.")
    group_mapping = forms.CharField(
        label="Group mapping", required=False,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false",
                                     "placeholder": "students-2026 => students\nteachers => teachers"}),
        help_text="One line per provider group: provider group => webvirt group. Set at every sign-in; webvirt "
                  "groups not named here are left alone.")
    admin_groups = forms.CharField(
        label="Administrator groups", required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Provider groups whose members are webvirt administrators (one per line). Empty: sign-ins never "
                  "change who is an administrator.")

    def __init__(self, *args: Any, config: OidcSettings, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {name: getattr(config, name) for name in SettingsData.__dataclass_fields__
                                      if name != "client_secret"})
        super().__init__(*args, **kwargs)
        for name, heading in SECTIONS.items():
            self.fields[name].section = heading  # type: ignore[attr-defined]  # a heading (_form.html)
        if config.has_secret:
            self.fields["client_secret"].help_text = "A secret is set — leave empty to keep it. Never shown again."

    def clean_scopes(self) -> str:
        scopes = " ".join(self.cleaned_data["scopes"].split())
        if "openid" not in scopes.split():
            raise forms.ValidationError("Include openid: without it the provider sends no ID token.")
        return scopes

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        try:
            groupsync.parse(self.cleaned_data.get("group_mapping", ""), self.cleaned_data.get("admin_groups", ""))
        except VirtError as exc:
            self.add_error("group_mapping", exc.message)
        return data

    def to_data(self) -> SettingsData:
        return SettingsData(**{name: self.cleaned_data[name] for name in SettingsData.__dataclass_fields__})
