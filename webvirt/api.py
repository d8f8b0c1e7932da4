"""The REST API's root: routes of every app, the schema, and one error format for all failures.

Every error answers `{"error": "<a sentence>", "code": "<kind>"}` (plus `"fields"` for form-like
validation), with a 4xx status: the API never answers 500 for bad input.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import exception_handler as drf_handler

from webvirt.accounts.api import ApiTokenViewSet, AuditViewSet, SshKeyViewSet
from webvirt.accounts.policy import Denied
from webvirt.catalog.api import TemplateViewSet
from webvirt.consoles.api import ConsoleTicketView
from webvirt.domains.api import DomainViewSet
from webvirt.hosts.api import HostViewSet
from webvirt.jobs.api import JobViewSet
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

STATUS_BY_KIND = {
    errors.INVALID: 400, errors.UNKNOWN_SCHEME: 400, errors.AUTH: 400, errors.UNSUPPORTED: 400,
    errors.OTHER: 400, errors.NOT_FOUND: 404, errors.CONFLICT: 409, errors.STATE: 409,
    # The host is down or slow: the request was fine, the target's condition is not.
    errors.UNREACHABLE: 409, errors.REFUSED: 409, errors.TIMEOUT: 409,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Denied):
        if exc.hidden:
            return Response({"error": "Not found.", "code": "not_found"}, status=404)
        return Response({"error": exc.message, "code": "forbidden"}, status=403)
    if isinstance(exc, VirtError):
        return Response({"error": exc.message, "code": exc.kind}, status=STATUS_BY_KIND.get(exc.kind, 400))
    if isinstance(exc, (ProtectedError, RestrictedError)):
        # Something still refers to it (a host's templates, say): the request was fine, the state is not.
        used_by = sorted({str(type(obj)._meta.verbose_name_plural) for obj in exc.args[1]})
        return Response({"error": f"It is still used by {', '.join(used_by) or 'other objects'}; remove those first.",
                         "code": errors.CONFLICT}, status=409)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        first = next(iter(fields.items()), ("", ["Invalid input."]))
        message = first[1][0] if isinstance(first[1], list) and first[1] else str(first[1])
        label = "" if first[0] in ("non_field_errors", "") else f"{first[0]}: "
        response.data = {"error": f"{label}{message}", "code": "invalid", "fields": fields}
    elif isinstance(exc, exceptions.APIException):
        response.data = {"error": str(exc.detail), "code": exc.get_codes() if isinstance(exc.get_codes(), str)
                         else "error"}
    if response.status_code >= 500:
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response


# No `.json` twins of the routes: the viewsets' actions take no `format` argument, so
# `/api/v1/domains/5/start.json` answered 500; JSON is what the API speaks anyway.
router = DefaultRouter()
router.include_format_suffixes = False
router.register("hosts", HostViewSet, basename="host")
router.register("domains", DomainViewSet, basename="domain")
router.register("audit", AuditViewSet, basename="audit")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("me/ssh-keys", SshKeyViewSet, basename="ssh-key")
router.register("jobs", JobViewSet, basename="job")
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = [
    # The router's routes first: Django tries patterns in order, and the lists and objects scripts ask for
    # most are here (every pattern before them costs every such request a regular expression match).
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # A page for people: anonymous visitors go to the login page (the API itself answers 401).
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api:schema")), name="docs"),
    path("domains/<int:pk>/console/", ConsoleTicketView.as_view(), name="domain-console"),
    path("", include("webvirt.install.api")),
    path("", include("webvirt.networks.api")),
    path("", include("webvirt.storage.api")),
    path("", include("webvirt.domains.device_api")),
    path("", include("webvirt.snapshots.api")),
    path("", include("webvirt.migration.api")),
    path("", include("webvirt.metrics.api")),
    path("", include("webvirt.waves.api")),
    path("", include("webvirt.people.api")),
]
