"""Domain pages. Views only wire forms and templates to `webvirt.domains.services`; their failures are
answered by the pages' error boundary (webvirt.ui)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains import bulk, services
from webvirt.domains.filters import DomainFilter
from webvirt.domains.forms import BulkForm, DefineForm, UndefineForm, XMLForm
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.ui import attempt, cleaned, fallback, render_live, safe_next, shown_here, visible_or_404
from webvirt.virt.domains import ACTIONS

PAGE_SIZES = (25, 50, 100, 200)


def _domain_page(request: HttpRequest, pk: int, **_: str) -> str:
    """Where a failed action on a domain sends the user back to (webvirt.ui.fallback)."""
    return reverse("domains:detail", args=[pk])


def domain_list(request: HttpRequest) -> HttpResponse:
    queryset = policy.visible(request.user, Domain.objects.select_related("host", "warm"))
    filters = DomainFilter(request.GET or None, queryset=queryset)
    filters.form.fields["host"].queryset = policy.visible(request.user, Host.objects.all())
    size = _page_size(request)
    page = Paginator(filters.qs, size).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filters": filters, "page": page, "query": query.urlencode(), "sizes": PAGE_SIZES, "size": size,
               "bulk_actions": bulk.ACTIONS.values(),
               "counts": services.state_counts(queryset),
               "offline": policy.visible(request.user, Host.objects.filter(status=Host.OFFLINE)).count(),
               "sort": request.GET.get("sort", "")}
    return render_live(request, "domains/list.html", "domains/_table.html", context)


def _page_size(request: HttpRequest) -> int:
    raw = request.GET.get("size", "")
    return int(raw) if raw.isdigit() and int(raw) in PAGE_SIZES else 50


def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    details = services.details(Actor.from_request(request), domain)
    if details.error and not Domain.objects.filter(pk=pk).exists():
        messages.error(request, f"{domain.name} no longer exists on {domain.host.name}.")
        return redirect("domains:list")
    return render(request, "domains/detail.html", {"domain": domain, "details": details,
                                                   "actions": ACTIONS.values()})


def domain_summary(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the domain page (state, buttons), re-fetched when an event arrives."""
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    return render(request, "domains/_summary.html", {"domain": domain, "actions": ACTIONS.values()})


@fallback(_domain_page)
@require_POST
def domain_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    if verb in ("autostart_on", "autostart_off"):
        services.set_autostart(Actor.from_request(request), domain, verb == "autostart_on")
        messages.success(request, f"Autostart is {'on' if verb == 'autostart_on' else 'off'} for {domain.name}.")
    else:
        row = services.run_action(Actor.from_request(request), domain, verb)
        messages.success(request, f"{ACTIONS[verb].label.capitalize()}: {row.name} is now {row.get_state_display()}.")
    return redirect(safe_next(request, domain.get_absolute_url()))


def domain_xml(request: HttpRequest, pk: int) -> HttpResponse:
    """View and edit the domain's XML. A definition libvirt rejects is shown again with its reason."""
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    if not policy.can(request.user, policy.CHANGE, domain):
        raise PermissionDenied("Only administrators may edit a domain's XML.")  # owners see it, not edit it
    actor = Actor.from_request(request)
    form = XMLForm(request.POST or None)
    error = None  # shown next to the editor, not repeated as a message at the top
    if request.method == "POST" and form.is_valid():
        _, error = attempt(lambda: services.update_xml(actor, domain, form.cleaned_data["xml"]))
        if error is None:
            messages.success(request, f"The definition of {domain.name} is saved.")
            return redirect("domains:xml", pk=domain.pk)
    elif request.method != "POST":
        xml, error = attempt(lambda: services.get_xml(actor, domain, inactive=True))
        form = XMLForm(initial={"xml": xml})
    return render(request, "domains/xml.html", {"domain": domain, "form": form, "error": error})


@fallback(_domain_page)
def domain_xml_download(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    xml = services.get_xml(Actor.from_request(request), domain, inactive=True)
    response = HttpResponse(xml, content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="{domain.name}.xml"'
    return response


def domain_define(request: HttpRequest) -> HttpResponse:
    hosts = policy.visible(request.user, Host.objects.all())
    form = DefineForm(request.POST or None, request.FILES or None, hosts=hosts)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with shown_here(request, form):  # libvirt's reason on the form, not repeated as a message at the top
            row = services.define(Actor.from_request(request), data["host"], data["xml"], data["transient"])
            messages.success(request, f"{row.name} is {'created and running' if data['transient'] else 'defined'} "
                                      f"on {row.host.name}.")
            return redirect(row)
    return render(request, "domains/define.html", {"form": form})


def domain_undefine(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    actor = Actor.from_request(request)
    # Not `request.POST or None`: leaving the box unticked can post an empty (yet valid) form.
    form = UndefineForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request):
            deleted = services.undefine(actor, domain, form.cleaned_data["delete_volumes"])
            extra = f" and {len(deleted)} volume(s) deleted" if deleted else ""
            messages.success(request, f"{domain.name} is undefined{extra}.")
            return redirect(reverse("domains:list"))
    details = services.details(actor, domain)
    return render(request, "domains/undefine.html", {"domain": domain, "form": form, "details": details})


def domain_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """An owner's delete: force off, undefine and delete its volumes, after a confirmation page."""
    domain = visible_or_404(request, Domain.objects.select_related("host", "template"), pk)
    if request.method == "POST":
        with shown_here(request):
            deleted = services.remove(Actor.from_request(request), domain)
            messages.success(request, f"{domain.name} is deleted, with {len(deleted)} disk volume(s).")
            return redirect(reverse("domains:list"))
    return render(request, "domains/remove.html", {"domain": domain})


@fallback(_domain_page)
@require_POST
def domain_extend(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a clone's expiry (owners within the template's limit)."""
    from webvirt.catalog.forms import ExtendForm
    from webvirt.catalog.services import extend_expiry

    domain = visible_or_404(request, Domain.objects.select_related("host", "template", "job"), pk)
    expires_at = cleaned(ExtendForm(request.POST), "Give the new expiry as a date and a time.")["expires_at"]
    extend_expiry(Actor.from_request(request), domain, expires_at)
    messages.success(request, f"{domain.name} now expires at {expires_at:%Y-%m-%d %H:%M}.")
    return redirect(domain)


def _list_page(request: HttpRequest, **_: str) -> str:
    return reverse("domains:list")


@fallback(_list_page)
@require_POST
def domain_bulk(request: HttpRequest) -> HttpResponse:
    """One action on the ticked domains, or on all the list's filter matches: a job, followed on its page."""
    form = BulkForm(request.POST)
    cleaned(form, "Choose an action for the selected domains.")
    job = bulk.start(Actor.from_request(request), form.cleaned_data["action"], form.args(), **form.selection())
    messages.success(request, f"{job.title}: job #{job.pk} is started; each domain gets a line below.")
    return redirect(job)
