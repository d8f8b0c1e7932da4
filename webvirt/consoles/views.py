"""Console pages (noVNC, xterm.js) and screenshots. The pages hold no secret: they ask the API for a ticket."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.consoles import services
from webvirt.domains.models import Domain
from webvirt.ui import attempt, plain_errors, visible_or_404


def _page(request: HttpRequest, pk: int, kind: str, template: str) -> HttpResponse:
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    policy.require(request.user, policy.CONSOLE, domain)
    _, problem = attempt(lambda: services.check_available(domain, kind))  # the page says why it cannot open
    return render(request, template, {"domain": domain, "problem": problem or "", "kind": kind,
                                      "popup": request.GET.get("window") == "1"})


@never_cache
def vnc_console(request: HttpRequest, pk: int) -> HttpResponse:
    return _page(request, pk, "vnc", "consoles/vnc.html")


@never_cache
def serial_console(request: HttpRequest, pk: int) -> HttpResponse:
    return _page(request, pk, "serial", "consoles/serial.html")


@plain_errors
@never_cache
def screenshot(request: HttpRequest, pk: int) -> HttpResponse:
    """The domain's screen now, as PNG; taken only when a page asks for it (never by list rendering)."""
    domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
    png = services.screenshot_png(Actor.from_request(request), domain)
    response = HttpResponse(png, content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="{domain.name}.png"'
    return response
