from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webvirt.accounts import policy, sshkeys, throttle, tokens
from webvirt.accounts.api import AuditFilter
from webvirt.accounts.forms import ApiTokenForm, SshKeyForm
from webvirt.accounts.models import ApiToken, AuditEntry
from webvirt.accounts.policy import Actor
from webvirt.ui import shown_here


def audit_list(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    filters = AuditFilter(request.GET or None, queryset=AuditEntry.objects.all())
    page = Paginator(filters.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/audit.html", {"filters": filters, "page": page, "query": query.urlencode()})


class ThrottledLoginView(LoginView):
    """Django's login page, answering 429 while the address or user name has too many recent failures.

    Failures are counted by throttle.count_failed_sign_in (Django's user_login_failed signal).
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        actor = Actor.from_request(request)
        block = throttle.blocked(actor.address, username)
        if block is None:
            return super().post(request, *args, **kwargs)
        throttle.audit(actor, "login.throttled", block, username)
        messages.error(request, block.message)
        # An unbound form: validating the posted one would check the password after all.
        form = self.get_form_class()(request, initial={"username": username})
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(block.wait)
        return response


def token_list(request: HttpRequest) -> HttpResponse:
    """The user's own API tokens, and a form for a new one whose key is shown on this answer only."""
    user = policy.signed_in(request)
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    new_key = ""
    if form.is_valid():
        days = form.cleaned_data["expires_days"]
        _token, new_key = tokens.issue(Actor.from_request(request), user, name=form.cleaned_data["name"],
                                       expires_in=timedelta(days=days) if days else None)
        form = ApiTokenForm()
    context = {"form": form, "tokens": ApiToken.objects.filter(user=user), "new_key": new_key}
    response = render(request, "accounts/tokens.html", context, status=400 if form.errors else 200)
    if new_key:
        response["Cache-Control"] = "no-store"  # the key must not come back from a cache or the history
    return response


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # someone else's token: 404
    tokens.revoke(Actor.from_request(request), token)
    messages.success(request, f"Revoked {token}. Scripts using it are refused from now on.")
    return redirect("tokens:list")


def profile(request: HttpRequest) -> HttpResponse:
    """Who you are, your groups, and your SSH keys: the list, a form to add one, a delete button each."""
    user = policy.signed_in(request)
    form = SshKeyForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        with shown_here(request, form):  # a refused key: the reason on the form, the paste kept (not a private one)
            key = sshkeys.add_key(Actor.from_request(request), user, form.cleaned_data["public_key"],
                                  form.cleaned_data["name"])
            messages.success(request, f"Added the SSH key {key.name}. Machines cloned for you from now on get it "
                                      "(from templates that use cloud-init).")
            return redirect("me:profile")
    if sshkeys.PRIVATE_KEY in form.non_field_errors():
        form.forget_key()
    context = {"form": form, "keys": sshkeys.own_keys(user), "max_keys": sshkeys.MAX_KEYS,
               "groups": user.groups.order_by("name"), "is_admin": policy.is_admin(user)}
    return render(request, "accounts/profile.html", context, status=400 if form.errors else 200)


@require_POST
def ssh_key_delete(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(sshkeys.own_keys(request.user), pk=pk)  # someone else's key: 404
    sshkeys.delete_key(Actor.from_request(request), key)
    messages.success(request, f"Deleted the SSH key {key.name}. Machines cloned from now on do not get it; those "
                              "you have still accept it until you remove it from their ~/.ssh/authorized_keys.")
    return redirect("me:profile")
