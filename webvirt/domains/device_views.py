"""The domain page's Devices panel: its IP addresses (read now) and forms that attach and detach disks
and interfaces or change CD-ROM media. Loaded after the page (htmx), so the page never waits on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains import devices
from webvirt.domains import services as domain_services
from webvirt.domains.addresses import refresh_addresses
from webvirt.domains.forms import (
    AttachDiskForm,
    AttachInterfaceForm,
    DetachDiskForm,
    DetachInterfaceForm,
    DeviceForm,
    MediaForm,
)
from webvirt.domains.models import Domain
from webvirt.ui import cleaned, fallback, visible_or_404
from webvirt.virt.devices import BUSES


def devices_panel(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    actor = Actor.from_request(request)
    addresses = refresh_addresses(actor, domain)
    can_change = policy.is_admin(request.user)
    choices = devices.choices(actor, domain) if can_change else None
    doc = domain_services.details(actor, domain).doc if can_change else None
    return render(request, "domains/_devices.html", {"domain": domain, "addresses": addresses, "doc": doc,
                                                     "choices": choices, "buses": list(BUSES),
                                                     "can_change": can_change})


def _devices_panel(request: HttpRequest, pk: int, **_: str) -> str:
    """Where a device change returns to, done or failed (webvirt.ui.fallback): the domain's Devices panel."""
    return reverse("domains:detail", args=[pk]) + "#devices"


# Each change the panel's forms post: its form and the function of webvirt.domains.devices doing it.
CHANGES: dict[str, tuple[type[DeviceForm], Callable[..., Any]]] = {
    "attach-disk": (AttachDiskForm, devices.attach_volume),
    "detach-disk": (DetachDiskForm, devices.detach_disk),
    "attach-interface": (AttachInterfaceForm, devices.attach_interface),
    "detach-interface": (DetachInterfaceForm, devices.detach_interface),
    "media": (MediaForm, devices.change_media),
}


@fallback(_devices_panel)
@require_POST
def device_change(request: HttpRequest, pk: int, op: str) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    if op not in CHANGES:
        messages.error(request, f"'{op}' is not a device change webvirt knows.")
        return redirect(_devices_panel(request, pk))
    form_class, change = CHANGES[op]
    actor, form = Actor.from_request(request), form_class(request.POST)
    if not form.is_valid():
        # Someone who may not change the devices hears that, not what is wrong with what they sent.
        devices.require_change(actor, domain)
        cleaned(form)
    result = change(actor, domain, *form.arguments())
    messages.success(request, form.done(domain.name, result))
    return redirect(_devices_panel(request, pk))
