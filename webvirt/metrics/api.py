"""REST API for usage history: a domain's (its owner and administrators) and a host's (administrators)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts.policy import Actor
from webvirt.api_base import host_or_404
from webvirt.domains.models import Domain
from webvirt.metrics import services, store
from webvirt.ui import visible_or_404

RANGE = OpenApiParameter("range", str, enum=list(store.RANGES), description="Default 1h.")


class SeriesSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="Seconds per point.")
    range = serializers.CharField()
    series = serializers.DictField(child=serializers.ListField(child=serializers.ListField()),
                                   help_text="name -> [[t, average, maximum], ...] (t: seconds since the epoch)")


class DomainMetricsView(APIView):
    @extend_schema(parameters=[RANGE], responses=SeriesSerializer, operation_id="domains_metrics")
    def get(self, request: Request, pk: int) -> Response:
        domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
        return Response(services.domain_series(Actor.from_request(request, "api"), domain,
                                               request.query_params.get("range", "1h")))


class HostMetricsView(APIView):
    @extend_schema(parameters=[RANGE], responses=SeriesSerializer, operation_id="hosts_metrics")
    def get(self, request: Request, pk: int) -> Response:
        """The host's figures, and `top`: its busiest domains' CPU share over the range."""
        return Response(services.host_series(Actor.from_request(request, "api"), host_or_404(request, pk),
                                             request.query_params.get("range", "1h")))


urlpatterns = [
    path("domains/<int:pk>/metrics/", DomainMetricsView.as_view(), name="domain-metrics"),
    path("hosts/<int:pk>/metrics/", HostMetricsView.as_view(), name="host-metrics"),
]
