"""The domain page's Devices panel: its IP addresses (read now) and forms that attach and detach disks
and interfaces or change CD-ROM media. Loaded after the page (htmx), so the page never waits on it."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains import devices
from webvirt.domains import services as domain_services
from webvirt.domains.models import Domain
from webvirt.networks import services as network_services
from webvirt.ui import fallback, visible_or_404
from webvirt.virt.devices import BUSES


def devices_panel(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    actor = Actor.from_request(request)
    addresses = network_services.refresh_addresses(actor, domain)
    can_change = policy.is_admin(request.user)
    choices = devices.choices(actor, domain) if can_change else None
    doc = domain_services.details(actor, domain).doc if can_change else None
    return render(request, "domains/_devices.html", {"domain": domain, "addresses": addresses, "doc": doc,
                                                     "choices": choices, "buses": list(BUSES),
                                                     "can_change": can_change})


def _devices_panel(request: HttpRequest, pk: int, **_: str) -> str:
    """Where a device change returns to, done or failed (webvirt.ui.fallback): the domain's Devices panel."""
    return reverse("domains:detail", args=[pk]) + "#devices"


@fallback(_devices_panel)
@require_POST
def device_change(request: HttpRequest, pk: int, op: str) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    actor, post = Actor.from_request(request), request.POST
    if op == "attach-disk":
        dev = devices.attach_volume(actor, domain, post.get("volume", ""), post.get("bus", "virtio"),
                                    bool(post.get("readonly")))
        messages.success(request, f"{post.get('volume')} is attached to {domain.name} as {dev}.")
    elif op == "detach-disk":
        devices.detach_disk(actor, domain, post.get("target", ""))
        messages.success(request, f"Disk {post.get('target')} is detached from {domain.name}.")
    elif op == "attach-interface":
        mac = devices.attach_interface(actor, domain, post.get("network", ""), post.get("model", "virtio"))
        messages.success(request, f"{domain.name} has a new interface {mac} on {post.get('network')}.")
    elif op == "detach-interface":
        devices.detach_interface(actor, domain, post.get("mac", ""))
        messages.success(request, f"Interface {post.get('mac')} is detached from {domain.name}.")
    elif op == "media":
        devices.change_media(actor, domain, post.get("target", ""), post.get("path", ""))
        messages.success(request, f"{post.get('target')}: " + (f"{post.get('path')} is inserted."
                                                               if post.get("path") else "ejected."))
    else:
        messages.error(request, f"'{op}' is not a device change webvirt knows.")
    return redirect(_devices_panel(request, pk))
