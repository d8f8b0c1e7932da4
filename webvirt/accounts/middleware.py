"""Request middleware of our own: forwarded headers only from our proxies, and login required everywhere
except the login page, static files and the API (which answers 401/403)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from webvirt.accounts.policy import from_trusted_proxy

OPEN_PREFIXES = ("/accounts/login/", "/static/", "/api/", "/favicon.ico", "/metrics")


class LoginRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated and not request.path.startswith(OPEN_PREFIXES):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)


class TrustedForwardingMiddleware:
    """Drop X-Forwarded-Proto unless our own proxy sent it.

    Django believes SECURE_PROXY_SSL_HEADER from anyone; a client talking to the web process directly
    could otherwise make a plain-HTTP request look secure (and be sent Secure-only cookies over it).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not from_trusted_proxy(request.META.get("REMOTE_ADDR")):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.get_response(request)
