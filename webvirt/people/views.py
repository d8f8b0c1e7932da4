"""The People pages (administrators only; to anyone else they do not exist): users, groups, the CSV import.

Views only wire forms and templates to `webvirt.people.services` and `csvimport`; failures go to the
pages' error boundary (webvirt.ui). A generated password is shown on the answer to the request that
made it, never stored, and that answer is not cached.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy, tokens
from webvirt.accounts.models import ApiToken
from webvirt.accounts.policy import Actor
from webvirt.catalog import quotas
from webvirt.catalog.models import Quota
from webvirt.people import csvimport, services
from webvirt.people.forms import GroupForm, ImportForm, MembersForm, PasswordForm, UserCreateForm, UserEditForm
from webvirt.ui import fallback, shown_here
from webvirt.virt.errors import VirtError

PER_PAGE = 50
# The sign-in settings pages of the directory (LDAP) and identity provider (OpenID Connect) apps, linked
# from the People page when they are installed.
SIGN_IN_PAGES = (("directory:settings", "LDAP sign-in"), ("oidc:settings", "OpenID Connect sign-in"))


def _user(request: HttpRequest, pk: int) -> User:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    return get_object_or_404(get_user_model(), pk=pk)


def _group(request: HttpRequest, pk: int) -> Group:
    policy.require_admin(request.user)
    return get_object_or_404(Group, pk=pk)


def _sign_in_links() -> list[tuple[str, str]]:
    links = []
    for name, label in SIGN_IN_PAGES:
        try:
            links.append((label, reverse(name)))
        except NoReverseMatch:
            continue  # that app is not installed
    return links


def _shown_once(response: HttpResponse) -> HttpResponse:
    """The answer carries a password: no cache or history may keep it."""
    response["Cache-Control"] = "no-store"
    return response


# Users --------------------------------------------------------------------------------------------

def people_list(request: HttpRequest) -> HttpResponse:
    """Users (searched, a page at a time) and groups."""
    policy.require_admin(request.user)
    query = request.GET.get("q", "").strip()[:100]
    page = Paginator(services.search(query), PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "people/list.html", {
        "page": page, "q": query, "query": f"q={quote(query)}" if query else "", "groups": services.groups(),
        "sign_in": _sign_in_links()})


def user_create(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):
            user, generated = services.create_user(Actor.from_request(request),
                                                   form.to_data(form.cleaned_data["username"]),
                                                   form.cleaned_data["password"])
            messages.success(request, f"User {user.get_username()} is created.")
            if generated:
                return _shown_once(render(request, "people/password.html", {"person": user, "password": generated,
                                                                            "made": True}))
            return redirect("people:detail", user.pk)
    return render(request, "people/form.html", {"form": form, "title": "New user"})


def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A user: their machines, quota use and limits, API tokens, groups and SSH keys."""
    person = _user(request, pk)
    return render(request, "people/detail.html", {
        "person": person, "is_admin": services.is_admin(person), "machines": services.machines_of(person),
        "quotas": _quota_rows(person), "left": quotas.remaining(person),
        "tokens": ApiToken.objects.filter(user=person), "groups": person.groups.order_by("name"),
        "ssh_keys": person.ssh_keys.count(), "itself": person.pk == request.user.pk})


def _quota_rows(person: User) -> list[dict[str, Any]]:
    """The quotas that limit `person` (their own and their groups'), each with what is in use under it."""
    rows = []
    for quota in quotas.applicable(person):
        used = quotas.usage_for(quota)
        rows.append({"quota": quota, "cells": [(getattr(used, k), getattr(quota, k)) for k in Quota.LIMITS]})
    return rows


def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    person = _user(request, pk)
    form = UserEditForm(request.POST or None, user=person)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):  # one's own administrator status or account: said on the form
            services.update_user(Actor.from_request(request), person, form.to_data(person.get_username()))
            messages.success(request, f"User {person.get_username()} is saved.")
            return redirect("people:detail", person.pk)
    return render(request, "people/form.html", {"form": form, "person": person,
                                                "title": f"Edit {person.get_username()}"})


def _set_active(request: HttpRequest, pk: int, active: bool) -> HttpResponse:
    """Confirm, then deactivate or reactivate a user."""
    person = _user(request, pk)
    if request.method == "POST":
        with shown_here(request):  # one's own account: said on this page again
            services.set_active(Actor.from_request(request), person, active)
            messages.success(request, f"User {person.get_username()} is {'active again' if active else 'deactivated'}.")
            return redirect("people:detail", person.pk)
    return render(request, "people/active.html", {"person": person, "active": active,
                                                  "itself": person.pk == request.user.pk,
                                                  "machines": services.machines_of(person).count()})


def user_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_active(request, pk, False)


def user_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_active(request, pk, True)


def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    """Set a new password: the one typed, or a generated one shown on the answer, once."""
    person = _user(request, pk)
    form = PasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):  # the site's password rules: said on the form
            generated = services.reset_password(Actor.from_request(request), person, form.cleaned_data["password"])
            if person.pk == request.user.pk:
                update_session_auth_hash(request, person)  # the administrator's own session goes on
            messages.success(request, f"The password of {person.get_username()} is changed; their other sessions "
                                      "have ended.")
            if generated:
                return _shown_once(render(request, "people/password.html", {"person": person,
                                                                            "password": generated}))
            return redirect("people:detail", person.pk)
    return render(request, "people/form.html", {"form": form, "person": person, "password_form": True,
                                                "title": f"New password for {person.get_username()}"})


def token_revoke(request: HttpRequest, pk: int, token_pk: int) -> HttpResponse:
    """Confirm, then revoke one of a user's API tokens."""
    person = _user(request, pk)
    token = get_object_or_404(ApiToken, pk=token_pk, user=person)
    if request.method == "POST":
        tokens.revoke(Actor.from_request(request), token)
        messages.success(request, f"Revoked {token} of {person.get_username()}: scripts using it are refused "
                                  "from now on.")
        return redirect(reverse("people:detail", args=[person.pk]) + "#tokens")
    return render(request, "people/confirm.html", {
        "person": person, "title": f"Revoke the API token {token}?", "verb": "Revoke",
        "text": f"It belongs to {person.get_username()}. Scripts that use it are refused from the moment it is "
                "revoked; it cannot be brought back (they can make a new one).",
        "back": reverse("people:detail", args=[person.pk]) + "#tokens"})


# Groups -------------------------------------------------------------------------------------------

def group_create(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)
    form = GroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):
            group = services.create_group(Actor.from_request(request), form.cleaned_data["name"])
            messages.success(request, f"Group {group.name} is created: add its members here.")
            return redirect("people:group", group.pk)
    return render(request, "people/form.html", {"form": form, "title": "New group"})


def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A group's members (add, remove), its name (rename) and what it is granted."""
    group = _group(request, pk)
    rename = GroupForm(request.POST if request.POST.get("do") == "rename" else None, initial={"name": group.name},
                       prefix="rename")
    add = MembersForm(request.POST if request.POST.get("do") == "add" else None, prefix="add")
    actor = Actor.from_request(request)
    if rename.is_bound and rename.is_valid():
        with shown_here(request, rename):
            services.rename_group(actor, group, rename.cleaned_data["name"])
            messages.success(request, f"The group is now called {group.name}.")
            return redirect("people:group", group.pk)
    if add.is_bound and add.is_valid():
        with shown_here(request, add):
            added = services.add_members(actor, group, add.members())
            messages.success(request, f"Added {', '.join(u.get_username() for u in added)} to {group.name}."
                             if added else f"They are all in {group.name} already.")
            return redirect("people:group", group.pk)
    group.refresh_from_db()  # a refused rename changed the name on the object only
    members = group.user_set.annotate(machines=Count("owned_domains", distinct=True)).order_by("username")
    return render(request, "people/group.html", {
        "group": group, "rename": rename, "add": add, "usage": services.usage_of(group),
        "page": Paginator(members, PER_PAGE * 2).get_page(request.GET.get("page")), "query": ""})


@require_POST
@fallback(lambda request, pk: reverse("people:group", args=[pk]))
def group_member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    group = _group(request, pk)
    if not request.POST.get("user", "").isdigit():
        raise ValidationError("Say whom to take out of the group.")
    member = get_object_or_404(get_user_model(), pk=request.POST["user"])
    removed = services.remove_members(Actor.from_request(request), group, [member])
    messages.success(request, f"{member.get_username()} is no longer in {group.name}." if removed
                     else f"{member.get_username()} was not in {group.name}.")
    return redirect("people:group", group.pk)


def group_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm (saying what uses the group), then delete it."""
    group = _group(request, pk)
    if request.method == "POST":
        services.delete_group(Actor.from_request(request), group)
        messages.success(request, f"Group {group.name} is deleted; its members stay.")
        return redirect(reverse("people:list") + "#groups")
    return render(request, "people/group_delete.html", {"group": group, "usage": services.usage_of(group)})


# CSV import ---------------------------------------------------------------------------------------

def people_import(request: HttpRequest) -> HttpResponse:
    """Upload or paste a CSV; see the preview; Import applies exactly what was previewed."""
    policy.require_admin(request.user)
    if request.method == "POST" and request.POST.get("token"):
        return _apply_import(request)
    form = ImportForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {"form": form}
    if form.is_bound and form.is_valid():
        try:
            text = form.csv_text()
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            context.update(_preview(text))
            if form.cleaned_data.get("file"):
                form = ImportForm()  # a new file next time; the uploaded one is not sent back
                context["form"] = form
    return render(request, "people/import.html", context)


def _preview(text: str) -> dict[str, Any]:
    plan = csvimport.plan(text)
    return {"plan": plan, "token": csvimport.sign(text, plan) if plan.ok else "",
            "file_errors": plan.problems}


def _apply_import(request: HttpRequest) -> HttpResponse:
    """Import the previewed file; if it cannot be, show why and the preview as it is now."""
    form = ImportForm()
    try:
        text, fingerprint = csvimport.unsign(request.POST["token"])
    except VirtError as exc:
        messages.error(request, exc.message)
        return render(request, "people/import.html", {"form": form})
    try:
        result = csvimport.apply(Actor.from_request(request), text, fingerprint)
    except VirtError as exc:
        messages.error(request, exc.message)
        return render(request, "people/import.html", {"form": form, **_preview(text)})
    messages.success(request, f"Imported: {len(result.created)} created, {len(result.updated)} updated, "
                              f"{len(result.unchanged)} unchanged.")
    uri = "data:text/csv;charset=utf-8," + quote(result.passwords_csv()) if result.passwords else ""
    return _shown_once(render(request, "people/imported.html", {"result": result, "passwords_uri": uri}))
