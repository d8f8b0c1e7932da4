"""The Migrate page of a domain (with its live pre-flight check) and a host's evacuation and maintenance.
Views only wire forms and templates to `webvirt.migration.services`."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.migration import services
from webvirt.migration.forms import MigrateForm
from webvirt.ui import fallback, shown_here, visible_or_404


def _domain(request: HttpRequest, pk: int) -> Domain:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    policy.require_admin(request.user)
    return domain


def _form(request: HttpRequest, domain: Domain, data: object = None) -> MigrateForm:
    hosts = Host.objects.exclude(pk=domain.host_id).order_by("maintenance", "name")
    return MigrateForm(data, hosts=hosts, initial={"live": domain.is_active, "host": hosts.first()})


def migrate(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    form = _form(request, domain, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):
            job = services.migrate(Actor.from_request(request), domain, form.request())
            messages.success(request, f"Migrating {domain.name} to {form.cleaned_data['host'].name}.")
            return redirect(job)
    return render(request, "migration/migrate.html", {"domain": domain, "form": form})


def check(request: HttpRequest, pk: int) -> HttpResponse:
    """The pre-flight check for the form's current values (the page asks again whenever they change)."""
    domain = _domain(request, pk)
    form = _form(request, domain, request.GET)
    result = services.check(Actor.from_request(request), domain, form.request()) if form.is_valid() else None
    return render(request, "migration/_check.html", {"result": result, "form": form})


def _host_page(request: HttpRequest, pk: int, **_: str) -> str:
    return reverse("hosts:detail", args=[pk])


def evacuate(request: HttpRequest, pk: int) -> HttpResponse:
    host = visible_or_404(request, Host.objects.all(), pk)
    if request.method == "POST":
        with shown_here(request):
            job = services.evacuate(Actor.from_request(request), host)
            return redirect(job)
    running = host.domains.filter(state__in=("running", "paused", "blocked")).order_by("name")
    return render(request, "migration/evacuate.html", {"host": host, "running": running})


@fallback(_host_page)
@require_POST
def maintenance(request: HttpRequest, pk: int) -> HttpResponse:
    host = visible_or_404(request, Host.objects.all(), pk)
    enabled = cleaned_flag(request)
    services.set_maintenance(Actor.from_request(request), host, enabled)
    messages.success(request, f"{host.name} is {'in maintenance' if enabled else 'out of maintenance'}.")
    return redirect(host)


def cleaned_flag(request: HttpRequest) -> bool:
    return request.POST.get("enabled", "") in ("1", "true", "on", "yes")
