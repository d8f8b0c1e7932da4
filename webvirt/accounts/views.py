from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webvirt.accounts import policy
from webvirt.accounts.api import AuditFilter
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Denied
from webvirt.ui import show_error


def audit_list(request: HttpRequest) -> HttpResponse:
    try:
        policy.require_admin(request.user)
    except Denied as exc:
        show_error(request, exc)
    filters = AuditFilter(request.GET or None, queryset=AuditEntry.objects.all())
    page = Paginator(filters.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/audit.html", {"filters": filters, "page": page, "query": query.urlencode()})
