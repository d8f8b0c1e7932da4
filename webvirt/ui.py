"""Small helpers the HTML views share: fetching what the user may see, and showing failures."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.http import url_has_allowed_host_and_scheme

from webvirt.accounts import policy
from webvirt.accounts.policy import Denied
from webvirt.virt.errors import VirtError


def visible_or_404(request: HttpRequest, queryset: QuerySet, pk: Any) -> Model:
    return get_object_or_404(policy.visible(request.user, queryset), pk=pk)


def show_error(request: HttpRequest, exc: Exception) -> None:
    """Put a failure in front of the user as a sentence; hidden objects become a 404."""
    if isinstance(exc, Denied):
        if exc.hidden:
            raise Http404(exc.message)
        messages.error(request, exc.message)
    elif isinstance(exc, VirtError):
        messages.error(request, exc.message)
    else:
        raise exc


def safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback
