"""Pages to install a new machine from an ISO and to upload an ISO. Views only wire forms to services."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.hosts.models import Host
from webvirt.install import services
from webvirt.install.forms import HostForm, InstallForm, UploadForm
from webvirt.ui import attempt, shown_here


def _host_and_choices(request: HttpRequest) -> tuple[HostForm, Host | None, dict, str]:
    """The chosen host (?host=, else the first online one), and what it offers, read live."""
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    hosts = policy.visible(request.user, Host.objects.order_by("name"))
    host = hosts.filter(pk=request.GET.get("host") or 0).first() or hosts.filter(status=Host.ONLINE).first()
    host_form = HostForm(initial={"host": host}, hosts=hosts)
    if host is None:
        return host_form, None, {}, "Add a host first."
    choices, error = attempt(lambda: services.host_choices(host), {})
    return host_form, host, choices, error.message if error else ""


def install_new(request: HttpRequest) -> HttpResponse:
    host_form, host, choices, problem = _host_and_choices(request)
    form = InstallForm(request.POST if request.method == "POST" and host else None, choices=choices or None,
                       kvm=bool(host and host.facts.get("kvm")))
    if request.method == "POST" and host is not None and form.is_valid():
        data = form.cleaned_data
        req = services.InstallRequest(
            name=data["name"], pool=data["pool"], iso=data["iso"], vcpus=data["vcpus"], memory_mib=data["memory_mib"],
            disk_gib=data["disk_gib"], network=data["network"], graphics=data["graphics"],
            boot=data["boot"].split(","), domain_type=data["domain_type"])
        with shown_here(request, form):
            job = services.start_install(Actor.from_request(request), host, req)
            messages.success(request, f"Installing {req.name}: its console opens once it runs.")
            return redirect(job)
    return render(request, "install/new.html", {"form": form, "host_form": host_form, "host": host,
                                                "problem": problem})


def upload_iso(request: HttpRequest) -> HttpResponse:
    host_form, host, choices, problem = _host_and_choices(request)
    form = UploadForm(request.POST if request.method == "POST" and host else None,
                      request.FILES if request.method == "POST" and host else None, pools=choices.get("pools"))
    if request.method == "POST" and host is not None and form.is_valid():
        data = form.cleaned_data
        with shown_here(request, form):
            job = services.start_upload(Actor.from_request(request), host, data["pool"], data["name"], data["file"])
            messages.success(request, f"{data['file'].name} is received; it is being copied into {data['pool']}.")
            return redirect(job)
    return render(request, "install/upload.html", {"form": form, "host_form": host_form, "host": host,
                                                   "problem": problem})
