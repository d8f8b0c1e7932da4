"""Host pages. Views only wire forms and templates to `webvirt.hosts.services`; their failures are answered
by the pages' error boundary (webvirt.ui)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.services import state_counts, state_counts_by_host
from webvirt.hosts import services
from webvirt.hosts.forms import HostForm
from webvirt.hosts.models import Host
from webvirt.ui import fallback, shown_here, visible_or_404


def host_list(request: HttpRequest) -> HttpResponse:
    hosts = list(policy.visible(request.user, Host.objects.all()))
    counts = state_counts_by_host([host.pk for host in hosts])
    rows = [(host, counts[host.pk], sum(counts[host.pk].values())) for host in hosts]  # host, its counts, total
    return render(request, "hosts/list.html", {"rows": rows, "can_add": policy.can(request.user, policy.ADD, Host)})


def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    host = visible_or_404(request, Host.objects.all(), pk)
    facts, error = services.live_facts(host)
    counts = state_counts(host.domains.all())
    return render(request, "hosts/detail.html", {"host": host, "facts": facts, "error": error, "counts": counts,
                                                 "total": sum(counts.values())})


def host_summary(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the host page (reachability, counts), re-fetched when an event arrives."""
    host = visible_or_404(request, Host.objects.all(), pk)
    counts = state_counts(host.domains.all())
    return render(request, "hosts/_summary.html", {"host": host, "counts": counts, "total": sum(counts.values())})


def host_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    host = visible_or_404(request, Host.objects.all(), pk) if pk else None
    if host is None and not policy.can(request.user, policy.ADD, Host):
        raise Http404("No such page.")  # like every page a user may not use: not even an empty form
    form = HostForm(request.POST or None, host=host)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):  # libvirt's reason on the form, not repeated as a message at the top
            actor = Actor.from_request(request)
            if host is None:
                host = services.create_host(actor, form.to_data())
                messages.success(request, f"Host {host.name} is registered and answers.")
            else:
                host = services.update_host(actor, host, form.to_data())
                messages.success(request, f"Host {host.name} is saved.")
            return redirect(host)
    return render(request, "hosts/form.html", {"form": form, "host": host})


def _host_page(request: HttpRequest, pk: int) -> str:
    """Where a host that could not be removed sends the user back to (webvirt.ui.fallback)."""
    return reverse("hosts:detail", args=[pk])


@fallback(_host_page)
def host_delete(request: HttpRequest, pk: int) -> HttpResponse:
    host = visible_or_404(request, Host.objects.all(), pk)
    if request.method == "POST":
        services.delete_host(Actor.from_request(request), host)
        messages.success(request, f"Host {host.name} is removed from webvirt. Nothing on it was changed.")
        return redirect(reverse("hosts:list"))
    return render(request, "hosts/delete.html", {"host": host, "count": host.domains.count()})
