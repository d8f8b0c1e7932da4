"""Catalog pages. Views only wire forms and templates to `webvirt.catalog.services`; their failures are
answered by the pages' error boundary (webvirt.ui)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.catalog import quotas, services, warm
from webvirt.catalog.forms import CloneForm, MakeTemplateForm, QuotaForm, RegisterForm, TemplateEditForm
from webvirt.catalog.models import Quota, Template
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.ui import attempt, shown_here, visible_or_404


def _templates(request: HttpRequest) -> QuerySet[Template]:
    return policy.visible(request.user, Template.objects.select_related("host").prefetch_related("users", "groups"))


def template_list(request: HttpRequest) -> HttpResponse:
    templates = list(_templates(request))
    return render(request, "catalog/list.html", {"templates": templates, "is_admin": policy.is_admin(request.user)})


def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The template, and the form that clones it; a clone request starts a job and shows its page."""
    template = visible_or_404(request, _templates(request), pk)
    form = CloneForm(request.POST or None, template=template, admin=policy.is_admin(request.user))
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):  # quota, names taken, host offline: said on the form
            answer = services.request_clones(Actor.from_request(request), template, form.to_request())
            messages.success(request, answer.message)
            return redirect(answer.page)
    is_admin = policy.is_admin(request.user)
    clones = policy.visible(request.user, template.clones.select_related("owner", "host", "warm")).order_by("name")
    return render(request, "catalog/detail.html", {
        "template": template, "form": form, "left": _left(policy.signed_in(request)), "is_admin": is_admin,
        "clones": clones[:200], "clone_count": clones.count(),
        "pool": template.pool, "warm": warm.status(template) if template.warm_count or is_admin else None})


def _left(user: User) -> list[tuple[str, str]]:
    """What the user may still use, as label and value; 'unlimited' where no quota limits it."""
    left = quotas.remaining(user)
    units = {"instances": ("Machines", ""), "vcpus": ("vCPUs", ""), "memory_mib": ("Memory", " MiB"),
             "disk_gib": ("Disk", " GiB")}
    return [(label, "unlimited" if left[key] is None else f"{left[key]:g}{unit}")
            for key, (label, unit) in units.items()]


def template_make(request: HttpRequest, domain_pk: int) -> HttpResponse:
    """Make a template from a shut-off domain."""
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    domain = visible_or_404(request, Domain.objects.select_related("host"), domain_pk)
    form = MakeTemplateForm(request.POST or None,
                            initial={"name": f"{domain.name}-template", "max_lifetime_days": 30})
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):
            template = services.make_template(Actor.from_request(request), domain, form.to_data())
            messages.success(request, f"{domain.name} is now the template {template.name}."
                             + (" Its disks are being sealed: clone it when that job has ended." if
                                template.seal_state == "sealing" else ""))
            return redirect(template)
    return render(request, "catalog/form.html", {"form": form, "domain": domain,
                                                 "title": f"Make a template from {domain.name}"})


def template_register(request: HttpRequest) -> HttpResponse:
    """Register a template from a disk volume in a pool, with settings."""
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    form = RegisterForm(request.POST or None, hosts=policy.visible(request.user, Host.objects.all()))
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with shown_here(request, form):
            template = services.register_template(Actor.from_request(request), d["host"], d["volume_path"],
                                                  form.to_data(), vcpus=d["vcpus"], memory_mib=d["memory_mib"],
                                                  network=d["network"])
            messages.success(request, f"Template {template.name} is registered.")
            return redirect(template)
    return render(request, "catalog/form.html", {"form": form, "title": "Register a template from a disk volume"})


def template_edit(request: HttpRequest, pk: int) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    template = visible_or_404(request, _templates(request), pk)
    form = TemplateEditForm(request.POST or None, template=template)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):
            services.update_template(Actor.from_request(request), template, form.to_data())
            messages.success(request, f"Template {template.name} is saved.")
            return redirect(template)
    return render(request, "catalog/form.html", {"form": form, "template": template,
                                                 "title": f"Edit {template.name}"})


def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    template = visible_or_404(request, _templates(request), pk)
    error = None  # shown in the confirmation, next to the button
    if request.method == "POST":
        _, error = attempt(lambda: services.delete_template(Actor.from_request(request), template))
        if error is None:
            messages.success(request, f"Template {template.name} is deleted.")
            return redirect("catalog:list")
    return render(request, "catalog/delete.html", {"template": template, "error": error,
                                                   "linked": template.clones.filter(linked=True).count(),
                                                   "clones": template.clones.count()})


def quota_list(request: HttpRequest) -> HttpResponse:
    """Every quota with what it has in use, and a form to set one."""
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    form = QuotaForm(request.POST or None, initial=_quota_initial(request))
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with shown_here(request, form):
            quota = services.save_quota(Actor.from_request(request), user=d["user"], group=d["group"],
                                        limits=form.limits())
            whom = f"user {d['user']}" if d["user"] else f"group {d['group']}"
            messages.success(request, f"The quota of {whom} is saved." if quota else f"{whom.capitalize()} has no "
                                      "quota now: no limits.")
            return redirect("catalog:quotas")
    rows = []
    for quota in Quota.objects.select_related("user", "group").order_by("group__name", "user__username"):
        used = quotas.usage_for(quota)
        rows.append({"quota": quota, "cells": [(getattr(used, k), getattr(quota, k)) for k in Quota.LIMITS]})
    return render(request, "catalog/quotas.html", {"form": form, "rows": rows})


def _quota_initial(request: HttpRequest) -> dict:
    """Pre-fill the form from ?user=<id> or ?group=<id> (the Edit links in the table)."""
    owner: dict = {}
    if request.GET.get("user", "").isdigit():
        owner = {"user": get_user_model().objects.filter(pk=request.GET["user"]).first()}
    elif request.GET.get("group", "").isdigit():
        owner = {"group": Group.objects.filter(pk=request.GET["group"]).first()}
    quota = Quota.objects.filter(**owner).first() if owner and next(iter(owner.values())) else None
    if quota is None:
        return owner
    return {**owner, **{k: getattr(quota, k) for k in Quota.LIMITS}}
