"""The domain page's Snapshots tab and the confirmation pages of its changes. Views only wire forms and
templates to `webvirt.snapshots.services`; failures are answered by the pages' error boundary."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.snapshots import services
from webvirt.snapshots.forms import DeleteForm, TakeForm
from webvirt.ui import attempt, cleaned, fallback, shown_here, visible_or_404
from webvirt.virt.snapshots import descendants


def _tab(request: HttpRequest, pk: int, **_: str) -> str:
    """Where a snapshot change returns to, started or refused (webvirt.ui.fallback)."""
    return reverse("domains:detail", args=[pk]) + "#snapshots"


def _domain(request: HttpRequest, pk: int) -> Domain:
    return visible_or_404(request, Domain.objects.select_related("host", "template"), pk)


def panel(request: HttpRequest, pk: int) -> HttpResponse:
    """The tab's content, loaded after the page and again whenever its snapshots or jobs change."""
    domain = _domain(request, pk)
    actor = Actor.from_request(request)
    snapshots, error = attempt(lambda: services.list_snapshots(actor, domain))
    form = TakeForm(initial={"name": services.default_name(), "memory": services.memory_by_default(domain)})
    return render(request, "snapshots/_panel.html", {
        "domain": domain, "snapshots": snapshots or [], "error": error, "form": form,
        "jobs": services.recent_jobs(actor, domain), "can_change": policy.can(request.user, policy.SNAPSHOT, domain)})


@fallback(_tab)
@require_POST
def take(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    data = cleaned(TakeForm(request.POST))
    req = services.TakeRequest(name=data["name"], description=data["description"], memory=data["memory"],
                               kind=data["kind"])
    job, chosen = services.take(Actor.from_request(request), domain, req)
    messages.success(request, f"Taking an {chosen.kind} snapshot of {domain.name}, because {chosen.reason} "
                              f"(job #{job.pk}).")
    return redirect(_tab(request, pk))


def revert(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    domain = _domain(request, pk)
    actor = Actor.from_request(request)
    if request.method == "POST":
        with shown_here(request):
            job = services.revert(actor, domain, name)
            messages.success(request, f"Reverting {domain.name} to {name} (job #{job.pk}).")
            return redirect(_tab(request, pk))
    return _confirm(request, domain, name, "revert", None)


def delete(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    domain = _domain(request, pk)
    form = DeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request):
            job = services.delete(Actor.from_request(request), domain, name, form.cleaned_data["children"])
            messages.success(request, f"Deleting snapshot {name} of {domain.name} (job #{job.pk}).")
            return redirect(_tab(request, pk))
    return _confirm(request, domain, name, "delete", form)


def reset(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    if not (domain.linked and domain.template_id):
        messages.error(request, f"{domain.name} is not a linked clone of a template, so there is nothing to reset "
                                "it to.")
        return redirect(_tab(request, pk))
    if request.method == "POST":
        with shown_here(request):
            job = services.reset_to_template(Actor.from_request(request), domain)
            messages.success(request, f"Resetting {domain.name} to its template (job #{job.pk}).")
            return redirect(_tab(request, pk))
    return _confirm(request, domain, "", "reset", None)


def _confirm(request: HttpRequest, domain: Domain, name: str, what: str, form: DeleteForm | None) -> HttpResponse:
    """Say what the change loses and ask first; the snapshot list tells which one and what lies below it."""
    snapshots = services.list_snapshots(Actor.from_request(request), domain)
    chosen = next((s for s in snapshots if s.name == name), None)
    if what != "reset" and chosen is None:
        messages.error(request, f"{domain.name} has no snapshot named {name!r} any more.")
        return redirect(_tab(request, domain.pk))
    below = descendants(snapshots, name) if chosen else []
    return render(request, "snapshots/confirm.html", {"domain": domain, "snapshot": chosen, "what": what,
                                                      "form": form, "below": below, "snapshots": snapshots})
