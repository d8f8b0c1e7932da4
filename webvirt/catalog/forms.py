"""Forms of the catalog pages: making, registering and editing templates, cloning, quotas, expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Field, QuerySet
from django.utils import timezone

from webvirt.catalog import seeds, services
from webvirt.catalog.models import Quota, Template
from webvirt.hosts.models import Host
from webvirt.ui import field_of
from webvirt.virt import clone as virt_clone
from webvirt.virt import seed as virt_seed
from webvirt.virt.errors import VirtError

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def _model_field(name: str) -> Field:
    field = Template._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _label(name: str) -> str:
    text = str(_model_field(name).verbose_name)
    return text[:1].upper() + text[1:]


def _checked(check: Callable[[str], object], text: str) -> str:
    """The YAML the user typed, or its error next to the field (the service checks it again for the API)."""
    try:
        check(text)
    except VirtError as exc:
        raise forms.ValidationError(exc.message) from None
    return text


def _help(name: str) -> str:
    return str(_model_field(name).help_text)


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format=LOCAL_FORMAT)


def local(value: datetime) -> str:
    """A moment as a datetime-local input shows it, in the site's time zone, to the minute."""
    return timezone.localtime(value).strftime(LOCAL_FORMAT)


class TemplateForm(forms.Form):
    """Name, description, OS, lifetime and grants: making a template and editing one."""

    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "prose"}))
    os = forms.CharField(label="OS", max_length=100, required=False,
                         widget=forms.TextInput(attrs={"placeholder": "Debian 12"}))
    max_lifetime_days = forms.IntegerField(label="Max lifetime (days)", min_value=1, max_value=3650, initial=30,
                                           help_text="Owners may extend a clone's expiry up to this many days "
                                                     "after it was made.")
    users = forms.ModelMultipleChoiceField(queryset=get_user_model().objects.none(), required=False,
                                           widget=forms.CheckboxSelectMultiple, label="Users who may clone it")
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.none(), required=False,
                                            widget=forms.CheckboxSelectMultiple, label="Groups who may clone it")
    # cloud-init (labels and help from the model, so that page and API say the same)
    cloud_init = forms.BooleanField(required=False, label=_label("cloud_init"), help_text=_help("cloud_init"))
    user_data = forms.CharField(required=False, label=_label("user_data"), help_text=_help("user_data"),
                                widget=forms.Textarea(attrs={"rows": 8, "class": "code", "spellcheck": "false",
                                                             "placeholder": "#cloud-config\npackage_update: true"}))
    network_config = forms.CharField(required=False, label=_label("network_config"),
                                     help_text=_help("network_config"),
                                     widget=forms.Textarea(attrs={"rows": 4, "class": "code", "spellcheck": "false"}))
    login_user = forms.CharField(required=False, max_length=32, label=_label("login_user"),
                                 help_text=_help("login_user"), widget=forms.TextInput(attrs={"spellcheck": "false"}))
    allow_password = forms.BooleanField(required=False, label=_label("allow_password"),
                                        help_text=_help("allow_password"))
    guest_agent = forms.BooleanField(required=False, label=_label("guest_agent"), help_text=_help("guest_agent"))
    detach_seed = forms.BooleanField(required=False, label=_label("detach_seed"), help_text=_help("detach_seed"))

    CLOUD_INIT = ("cloud_init", "user_data", "network_config", "login_user", "allow_password", "guest_agent",
                  "detach_seed")

    def __init__(self, *args: Any, template: Template | None = None, **kwargs: Any) -> None:
        if template is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": template.name, "description": template.description, "os": template.os,
                                 "max_lifetime_days": template.max_lifetime_days, "users": template.users.all(),
                                 "groups": template.groups.all(),
                                 **{key: getattr(template, key) for key in self.CLOUD_INIT}}
        super().__init__(*args, **kwargs)
        self.fields["cloud_init"].section = "cloud-init"  # type: ignore[attr-defined]  # a heading (_form.html)
        # Administrators may clone everything already; granting them a template would mean nothing.
        field_of(self, "users", forms.ModelMultipleChoiceField).queryset = get_user_model().objects.filter(
            is_active=True, is_staff=False, is_superuser=False).order_by("username")
        field_of(self, "groups", forms.ModelMultipleChoiceField).queryset = Group.objects.order_by("name")

    def clean_user_data(self) -> str:
        return _checked(virt_seed.check_cloud_config, self.cleaned_data["user_data"])

    def clean_network_config(self) -> str:
        return _checked(virt_seed.check_network_config, self.cleaned_data["network_config"])

    def to_data(self) -> services.TemplateData:
        d = self.cleaned_data
        return services.TemplateData(name=d["name"], description=d["description"], os=d["os"],
                                     max_lifetime_days=d["max_lifetime_days"], users=list(d["users"]),
                                     groups=list(d["groups"]), cloud_init=seeds.CloudInitData(
                                         enabled=d["cloud_init"], user_data=d["user_data"],
                                         network_config=d["network_config"], allow_password=d["allow_password"],
                                         login_user=d["login_user"], guest_agent=d["guest_agent"],
                                         detach_seed=d["detach_seed"]))


class MakeTemplateForm(TemplateForm):
    """Making a template from a domain: the fields above, and sealing its disks first."""

    seal = forms.BooleanField(
        required=False, label="Seal the disk with virt-sysprep",
        help_text="Empties the machine-id and removes SSH host keys, logs and cloud-init state, so that no two "
                  "clones look like the same machine. Runs as a job (a minute or more); needs libguestfs on the "
                  "worker and a host on the worker's machine. If it cannot run, the template is left unsealed and "
                  "its page says why.")

    def to_data(self) -> services.TemplateData:
        data = super().to_data()
        data.seal = self.cleaned_data["seal"]
        return data


class TemplateEditForm(TemplateForm):
    """Editing a template: the fields above, and its warm pool."""

    warm_count = forms.IntegerField(label="Warm machines", min_value=0, initial=0, required=False,
                                    help_text="Clones kept booted and waiting: a request for one machine gets one at "
                                              "once. They hold the warm pool budget, not anyone's quota.")
    boot_marker = forms.CharField(label="Ready line", max_length=200, required=False,
                                  widget=forms.TextInput(attrs={"spellcheck": "false"}),
                                  help_text="What the guest prints on its serial console once it is up. Empty: a "
                                            "warm machine is ready once it has run for 10 s.")

    def __init__(self, *args: Any, template: Template, **kwargs: Any) -> None:
        super().__init__(*args, template=template, **kwargs)
        self.fields["warm_count"].section = "Warm pool"  # type: ignore[attr-defined]  # a heading (_form.html)
        self.initial.setdefault("warm_count", template.warm_count)
        self.initial.setdefault("boot_marker", template.boot_marker)

    def to_data(self) -> services.TemplateData:
        data = super().to_data()
        data.warm_count = self.cleaned_data["warm_count"]
        data.boot_marker = self.cleaned_data["boot_marker"]
        return data


class RegisterForm(TemplateForm):
    """A template from a disk image already in a pool, with the settings its clones get."""

    host = forms.ModelChoiceField(queryset=Host.objects.none(), empty_label=None)
    volume_path = forms.CharField(label="Disk volume", max_length=500,
                                  widget=forms.TextInput(attrs={"placeholder": "/var/lib/libvirt/images/debian.qcow2",
                                                                "spellcheck": "false", "list": "volumes"}),
                                  help_text="The path of a volume in one of the host's storage pools. It becomes "
                                            "the read-only base of every clone.")
    vcpus = forms.IntegerField(label="vCPUs", min_value=1, max_value=512, initial=1)
    memory_mib = forms.IntegerField(label="Memory (MiB)", min_value=16, initial=1024)
    network = forms.CharField(max_length=100, required=False, initial="default",
                              help_text="A libvirt network on the host; empty for no network interface.")

    field_order = ["host", "volume_path", "name", "description", "os", "vcpus", "memory_mib", "network",
                   "max_lifetime_days", "users", "groups"]

    def __init__(self, *args: Any, hosts: QuerySet[Host] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field_of(self, "host", forms.ModelChoiceField).queryset = hosts if hosts is not None else Host.objects.none()
        self.fields["name"].widget.attrs.pop("autofocus", None)


class CloneForm(forms.Form):
    count = forms.IntegerField(label="How many", initial=1,
                               widget=forms.NumberInput(attrs={"min": 1, "max": services.MAX_CLONES}))
    name_pattern = forms.CharField(max_length=80, help_text="{n} is replaced by the number: {n:02} gives 01, 02…; "
                                                            "numbers go on after names already taken.",
                                   widget=forms.TextInput(attrs={"spellcheck": "false"}))
    mode = forms.ChoiceField(choices=[("linked", "Linked: an overlay on the template's disk (seconds, little disk)"),
                                      ("full", "Full: a copy of every disk (slower, independent)")],
                             initial="linked", widget=forms.RadioSelect)
    start = forms.BooleanField(required=False, initial=True, label="Start them when they are made")
    expires_at = forms.DateTimeField(label="Expires at", required=False, input_formats=[LOCAL_FORMAT],
                                     widget=LocalDateTimeInput())
    password = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))

    def __init__(self, *args: Any, template: Template, admin: bool = False, **kwargs: Any) -> None:
        now = timezone.now()
        latest = now + timedelta(days=template.max_lifetime_days)
        # The longest allowed life (cut to the minute, so it is still allowed when the form is sent).
        kwargs.setdefault("initial", {"name_pattern": f"{template.name}-{{n:02}}", "expires_at": local(latest)})
        super().__init__(*args, **kwargs)
        self.template = template
        expires = self.fields["expires_at"]
        expires.widget.attrs.update({"min": local(now), "max": local(latest)})
        expires.required = not admin  # only administrators make clones that never expire
        expires.error_messages["required"] = f"Say when the clones expire: at most {template.max_lifetime_days} days."
        expires.help_text = (f"At most {template.max_lifetime_days} days from now ({local(latest).replace('T', ' ')})"
                             + (". Empty: never." if admin else "; they are then removed with their disks."))
        if template.cloud_init and template.allow_password:
            self.fields["password"].help_text = (f"Optional: the password of {template.login_user} in your clones, "
                                                 "at least 8 characters. It is kept only as a hash; webvirt never "
                                                 "shows it again.")
        else:
            del self.fields["password"]

    def clean_count(self) -> int:
        count = self.cleaned_data["count"]
        if not 1 <= count <= services.MAX_CLONES:
            raise forms.ValidationError(f"Ask for between 1 and {services.MAX_CLONES} clones at a time.")
        return count

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if "count" in data and "name_pattern" in data:
            try:
                virt_clone.clone_names(data["name_pattern"], data["count"])
            except VirtError as exc:
                self.add_error("name_pattern", exc.message)
        return data

    def to_request(self) -> services.CloneRequest:
        d = self.cleaned_data
        return services.CloneRequest(count=d["count"], name_pattern=d["name_pattern"], mode=d["mode"],
                                     start=d["start"], expires_at=d["expires_at"], password=d.get("password", ""))


class QuotaForm(forms.Form):
    """Limits for one user or one group; an empty limit means no limit."""

    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="—")
    group = forms.ModelChoiceField(queryset=Group.objects.none(), required=False, empty_label="—")
    instances = forms.IntegerField(label="Machines", min_value=0, required=False)
    vcpus = forms.IntegerField(label="vCPUs", min_value=0, required=False)
    memory_mib = forms.IntegerField(label="Memory (MiB)", min_value=0, required=False)
    disk_gib = forms.IntegerField(label="Disk (GiB)", min_value=0, required=False,
                                  help_text="Full clones count their disks; linked clones almost nothing.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field_of(self, "user", forms.ModelChoiceField).queryset = get_user_model().objects.filter(
            is_active=True).order_by("username")
        field_of(self, "group", forms.ModelChoiceField).queryset = Group.objects.order_by("name")
        for key in Quota.LIMITS:
            self.fields[key].widget.attrs["placeholder"] = "unlimited"

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if bool(data.get("user")) == bool(data.get("group")):
            raise forms.ValidationError("Choose either a user or a group.")
        return data

    def limits(self) -> dict[str, int | None]:
        return {k: self.cleaned_data.get(k) for k in Quota.LIMITS}


class ExtendForm(forms.Form):
    expires_at = forms.DateTimeField(label="New expiry", input_formats=[LOCAL_FORMAT], widget=LocalDateTimeInput())
