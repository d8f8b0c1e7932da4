"""The OpenID Connect settings page (administrators), and the two steps of a sign-in: off to the provider
and back (mozilla-django-oidc's views, configured from the stored settings)."""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from mozilla_django_oidc.views import (  # type: ignore[import-untyped]
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.oidc import services
from webvirt.oidc.backend import CALLBACK, REFUSAL, library_setting
from webvirt.oidc.forms import OidcSettingsForm
from webvirt.oidc.models import OidcSettings
from webvirt.ui import shown_here
from webvirt.virt.errors import quote

NOT_SET_UP = "Sign-in with OpenID Connect is not set up. Sign in with your user name and password."


def settings_page(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    config = OidcSettings.load()
    form = OidcSettingsForm(request.POST if request.method == "POST" else None, config=config)
    if form.is_valid():
        with shown_here(request, form):  # the discovery document's problem on the form, what was typed kept
            config = services.save_settings(Actor.from_request(request), form.to_data())
            state = "on: the login page offers it" if config.enabled else "off"
            messages.success(request, f"Saved the OpenID Connect settings. Sign-in through the provider is {state}.")
            return redirect("oidc:settings")
    context = {"form": form, "config": config, "callback_url": request.build_absolute_uri(reverse(CALLBACK))}
    return render(request, "oidc/settings.html", context, status=400 if form.errors else 200)


def _login_page(request: HttpRequest, next_url: str | None) -> HttpResponse:
    """The login page, keeping where the person was going if that is on this site."""
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}")
    return HttpResponseRedirect(settings.LOGIN_URL)


class _FromStoredSettings:
    """Answers the library's settings from the OidcSettings row (read once per request)."""

    @cached_property
    def config(self) -> OidcSettings:
        return OidcSettings.load()

    def get_settings(self, attr: str, *args: Any) -> Any:
        return library_setting(self.config, attr, *args)


class SignInStart(_FromStoredSettings, OIDCAuthenticationRequestView):
    """The login page's button: state, nonce and PKCE verifier into the session, then to the provider."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not self.config.ready:
            messages.error(request, NOT_SET_UP)
            return _login_page(request, request.GET.get("next"))
        response: HttpResponse = super().get(request)
        return response


class SignInCallback(_FromStoredSettings, OIDCAuthenticationCallbackView):
    """Back from the provider: the backend exchanges the code and signs the person in, or says why not."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not self.config.ready:
            messages.error(request, NOT_SET_UP)
            return _login_page(request, None)
        state = request.GET.get("state")
        if state is not None and state not in (request.session.get("oidc_states") or {}):
            return self._not_ours(request)
        try:
            response: HttpResponse = super().get(request)
        except SuspiciousOperation:  # the library's own check of the same
            return self._not_ours(request)
        return response

    def _not_ours(self, request: HttpRequest) -> HttpResponse:
        """An answer for a sign-in this session did not start, or one already used (a replay)."""
        messages.error(request, "This sign-in was not started in this browser, or was already used. Start again "
                                "from the login page.")
        return _login_page(request, None)

    def login_failure(self) -> HttpResponse:
        request = self.request
        reason = getattr(request, REFUSAL, "")
        error = request.GET.get("error")
        if not reason and error:
            said = request.GET.get("error_description") or error
            reason = f"The identity provider did not sign you in: {quote(said, 200)}."
        messages.error(request, reason or "The sign-in with the identity provider did not complete. Try again.")
        return _login_page(request, request.session.get("oidc_login_next"))
