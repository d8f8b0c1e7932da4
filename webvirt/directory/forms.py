from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from django import forms

from webvirt.accounts import groupsync
from webvirt.directory import services
from webvirt.directory.models import LdapSettings
from webvirt.directory.services import LdapData
from webvirt.virt.errors import VirtError

SECTIONS = {"enabled": "Server", "bind_dn": "Service account", "user_search_base": "Users",
            "group_search_base": "Groups"}
DN = {"spellcheck": "false", "autocapitalize": "off"}


def _text(placeholder: str = "") -> forms.TextInput:
    return forms.TextInput(attrs={**DN, "placeholder": placeholder} if placeholder else DN)


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except VirtError as exc:
        raise forms.ValidationError(exc.message) from None


class LdapSettingsForm(forms.Form):
    enabled = forms.BooleanField(label="Sign people in with their directory account", required=False)
    server_uri = forms.CharField(
        label="Server address", max_length=500, required=False,
        widget=_text("ldaps://ldap.example.org"),
        help_text="ldap://host[:port] or ldaps://host[:port].")
    start_tls = forms.BooleanField(label="Use StartTLS (for an ldap:// address)", required=False)
    ca_certificate = forms.CharField(
        label="CA certificate", required=False,
        widget=forms.Textarea(attrs={**DN, "rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----"}),
        help_text="The certificate of the CA that signed the directory's certificate (PEM), for ldaps:// and "
                  "StartTLS. Empty: this machine's trusted CAs.")
    timeout = forms.IntegerField(label="Timeout (seconds)", min_value=1, max_value=services.MAX_TIMEOUT,
                                 help_text="How long each step may take before the sign-in gives up on the server.")
    bind_dn = forms.CharField(label="Bind DN", max_length=500, required=False,
                              widget=_text("cn=webvirt,ou=services,dc=example,dc=org"),
                              help_text="The account webvirt looks users up with. Empty: anonymously.")
    bind_password = forms.CharField(
        label="Bind password", required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again.")
    clear_password = forms.BooleanField(label="Remove the stored bind password", required=False)
    user_search_base = forms.CharField(label="User search base", max_length=500, required=False,
                                       widget=_text("ou=people,dc=example,dc=org"))
    user_filter = forms.CharField(label="User filter", max_length=500, widget=_text(),
                                  help_text="%(user)s is the name typed on the login page.")
    first_name_attribute = forms.CharField(label="First name attribute", max_length=100, required=False,
                                           widget=_text())
    last_name_attribute = forms.CharField(label="Last name attribute", max_length=100, required=False,
                                          widget=_text())
    email_attribute = forms.CharField(label="E-mail attribute", max_length=100, required=False,
                                      widget=_text())
    group_search_base = forms.CharField(label="Group search base", max_length=500, required=False,
                                        widget=_text("ou=groups,dc=example,dc=org"),
                                        help_text="Where a user's groups are looked up at each sign-in. Empty: groups "
                                                  "are not read.")
    group_type = forms.ChoiceField(label="Group type", choices=LdapSettings.GROUP_TYPES, widget=forms.RadioSelect)
    group_mapping = forms.CharField(
        label="Group mapping", required=False,
        widget=forms.Textarea(attrs={**DN, "rows": 5,
                                     "placeholder": "students-2026 => students\nteachers => teachers"}),
        help_text="One line per LDAP group (its cn or its full DN): LDAP group => webvirt group. Set at every "
                  "sign-in; webvirt groups not named here are left alone.")
    admin_groups = forms.CharField(
        label="Administrator groups", required=False, widget=forms.Textarea(attrs={**DN, "rows": 2}),
        help_text="LDAP groups whose members are webvirt administrators (one per line). Empty: sign-ins never "
                  "change who is an administrator.")

    def __init__(self, *args: Any, row: LdapSettings, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {f.name: getattr(row, f.name) for f in fields(LdapData)
                                      if hasattr(row, f.name)})
        super().__init__(*args, **kwargs)
        for name, heading in SECTIONS.items():
            self.fields[name].section = heading  # type: ignore[attr-defined]  # a heading (_form.html)
        if row.has_password:
            self.fields["bind_password"].help_text = ("A password is set — leave empty to keep it. Never shown "
                                                      "again; enter it again if you change the server address.")
        else:
            del self.fields["clear_password"]

    def clean_server_uri(self) -> str:
        return str(_checked(services.check_uri, self.cleaned_data["server_uri"]))

    def clean_ca_certificate(self) -> str:
        return str(_checked(services.check_ca, self.cleaned_data["ca_certificate"]))

    def clean_bind_dn(self) -> str:
        return str(_checked(lambda v: services.check_dn(v, "bind DN"), self.cleaned_data["bind_dn"]))

    def clean_user_search_base(self) -> str:
        return str(_checked(lambda v: services.check_dn(v, "user search base"), self.cleaned_data["user_search_base"]))

    def clean_group_search_base(self) -> str:
        return str(_checked(lambda v: services.check_dn(v, "group search base"),
                            self.cleaned_data["group_search_base"]))

    def clean_user_filter(self) -> str:
        return str(_checked(services.check_filter, self.cleaned_data["user_filter"]))

    def clean_first_name_attribute(self) -> str:
        return str(_checked(services.check_attribute, self.cleaned_data["first_name_attribute"]))

    def clean_last_name_attribute(self) -> str:
        return str(_checked(services.check_attribute, self.cleaned_data["last_name_attribute"]))

    def clean_email_attribute(self) -> str:
        return str(_checked(services.check_attribute, self.cleaned_data["email_attribute"]))

    def clean_group_mapping(self) -> str:
        text = self.cleaned_data["group_mapping"]
        _checked(groupsync.parse, text)  # every bad line, with its number, next to the field
        return str(text)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            services.check_together(self.to_data())
        except VirtError as exc:
            self.add_error(None, exc.message)
        return data

    def to_data(self) -> LdapData:
        return LdapData(**{f.name: self.cleaned_data.get(f.name, f.default) for f in fields(LdapData)})


class ProbeForm(forms.Form):
    test_user = forms.CharField(label="Test user name", max_length=150, required=False,
                                widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "off"}),
                                help_text="Optional: a user to look up, with their groups and how they map.")
