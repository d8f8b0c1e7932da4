"""Forms of the People pages. Only the shape here: webvirt.people.services checks what it means."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.models import Group, User

from webvirt.people import csvimport, services
from webvirt.people.services import UserData
from webvirt.ui import field_of
from webvirt.virt.errors import VirtError

PASSWORD_HELP = ("Leave empty to have one generated: it is shown once, on the next page. The site's password "
                 "rules apply (at least 8 characters, not a common password).")


def _groups_field() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(queryset=Group.objects.none(), required=False,
                                          widget=forms.CheckboxSelectMultiple, label="Groups")


class UserEditForm(forms.Form):
    first_name = forms.CharField(max_length=services.MAX_NAME, required=False, label="First name")
    last_name = forms.CharField(max_length=services.MAX_NAME, required=False, label="Last name")
    # A text box (type=email is not styled like the others), checked as an address all the same.
    email = forms.EmailField(required=False, label="E-mail", widget=forms.TextInput(attrs={"inputmode": "email"}))
    groups = _groups_field()
    is_admin = forms.BooleanField(required=False, label="Administrator",
                                  help_text="Sees and does everything in webvirt, on every host.")
    is_active = forms.BooleanField(required=False, label="Active", initial=True,
                                   help_text="A deactivated user cannot sign in or use API tokens; their machines "
                                             "stay.")

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        if user is not None and "initial" not in kwargs:
            data = services.data_of(user)
            kwargs["initial"] = {"first_name": data.first_name, "last_name": data.last_name, "email": data.email,
                                 "groups": data.groups, "is_admin": data.is_admin, "is_active": data.is_active}
        super().__init__(*args, **kwargs)
        field_of(self, "groups", forms.ModelMultipleChoiceField).queryset = Group.objects.order_by("name")

    def to_data(self, username: str) -> UserData:
        d = self.cleaned_data
        return UserData(username=username, first_name=d["first_name"], last_name=d["last_name"], email=d["email"],
                        groups=list(d["groups"]), is_admin=d["is_admin"], is_active=d.get("is_active", True))


class UserCreateForm(UserEditForm):
    username = forms.CharField(max_length=services.MAX_NAME, label="User name",
                               help_text="What they sign in with: letters, digits and @ . + - _",
                               widget=forms.TextInput(attrs={"autofocus": True, "autocapitalize": "off",
                                                             "spellcheck": "false"}))
    password = forms.CharField(required=False, strip=False, label="Initial password", help_text=PASSWORD_HELP,
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    field_order = ["username", "first_name", "last_name", "email", "groups", "is_admin", "password"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["is_active"]  # a new account is active

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        problem = services.username_problem(username)
        if problem:
            raise forms.ValidationError(f"{problem.capitalize()}.")
        return username


class PasswordForm(forms.Form):
    password = forms.CharField(required=False, strip=False, label="New password",
                               help_text=PASSWORD_HELP.replace("it is shown once, on the next page",
                                                               "it is shown once, on this page"),
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}))


class GroupForm(forms.Form):
    name = forms.CharField(max_length=services.MAX_NAME, label="Name",
                           widget=forms.TextInput(attrs={"autofocus": True}))


def split_names(text: str) -> list[str]:
    return [name for name in re.split(r"[\s,;]+", text) if name]


class MembersForm(forms.Form):
    usernames = forms.CharField(label="User names", help_text="Separated by spaces, commas or new lines.",
                                widget=forms.Textarea(attrs={"rows": 2, "autocapitalize": "off",
                                                             "spellcheck": "false"}))

    def members(self) -> list[User]:
        return services.users_named(split_names(self.cleaned_data["usernames"]))


class ImportForm(forms.Form):
    file = forms.FileField(required=False, label="CSV file",
                           help_text=f"UTF-8, at most {csvimport.MAX_BYTES // 1024**2} MiB and "
                                     f"{csvimport.MAX_LINES:,} people.")
    text = forms.CharField(required=False, strip=False, label="…or paste it here",
                           widget=forms.Textarea(attrs={"rows": 10, "class": "code", "spellcheck": "false",
                                                        "placeholder": f"{csvimport.HEADER}\nada,Ada Lovelace,"
                                                                       "ada@example.org,students;maths"}))

    def csv_text(self) -> str:
        """The file's text if one was chosen, else what was pasted; a ValidationError on the form otherwise."""
        upload = self.cleaned_data.get("file")
        if upload:
            try:
                return csvimport.read(upload.read(csvimport.MAX_BYTES + 1))
            except VirtError as exc:
                raise forms.ValidationError(exc.message) from None
        text: str = self.cleaned_data.get("text") or ""
        if not text.strip():
            raise forms.ValidationError("Choose a CSV file, or paste its lines.")
        return text
