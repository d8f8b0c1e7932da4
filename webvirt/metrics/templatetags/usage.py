from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse

from webvirt.metrics.models import Point
from webvirt.metrics.store import RANGES

register = template.Library()


@register.inclusion_tag("metrics/_graphs.html")
def usage_graphs(obj: Any, kind: str = Point.DOMAIN) -> dict[str, Any]:
    """The Usage card of a domain's (kind "d") or a host's ("h") page."""
    url = reverse("api:domain-metrics" if kind == Point.DOMAIN else "api:host-metrics", args=[obj.pk])
    return {"metrics_key": f"{kind}:{obj.pk}", "metrics_url": url, "metrics_ranges": list(RANGES),
            "metrics_interval": settings.WEBVIRT_METRICS_INTERVAL}
