"""REST API for moving domains between hosts and for emptying a host (administrators only)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import JOB_ACCEPTED, host_or_404, job_accepted
from webvirt.domains.models import Domain
from webvirt.hosts.api import HostSerializer
from webvirt.hosts.models import Host
from webvirt.migration import services
from webvirt.ui import visible_or_404
from webvirt.virt.migration import STORAGE_MODES


class MoveSerializer(serializers.Serializer):
    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all(), help_text="The destination host.")
    live = serializers.BooleanField(default=True)
    storage = serializers.ChoiceField(choices=list(STORAGE_MODES), default="shared")
    max_downtime_ms = serializers.IntegerField(default=300, min_value=10, max_value=10_000)
    bandwidth_mib_s = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                               max_value=100_000)

    def request(self) -> services.MoveRequest:
        return services.MoveRequest(**self.validated_data)


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())
    snapshots = serializers.IntegerField(help_text="Snapshots that travel (shared storage only).")


class MaintenanceSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class _DomainMove(APIView):
    def domain(self, request: Request, pk: int) -> Domain:
        domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
        policy.require_admin(request.user)  # before the input is read: a domain's owner hears 404, not 400
        return domain

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")

    def move(self, data: Any) -> services.MoveRequest:
        serializer = MoveSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.request()


class CheckView(_DomainMove):
    @extend_schema(parameters=[OpenApiParameter("host", int, required=True), OpenApiParameter("storage", str),
                               OpenApiParameter("live", bool)],
                   responses=CheckSerializer, operation_id="domains_migrate_check")
    def get(self, request: Request, pk: int) -> Response:
        """Everything that keeps the domain from moving there, before anything moves."""
        domain = self.domain(request, pk)
        result = services.check(self.actor(), domain, self.move(request.query_params))
        return Response(CheckSerializer(result).data)


class MigrateView(_DomainMove):
    @extend_schema(request=MoveSerializer, responses=JOB_ACCEPTED, operation_id="domains_migrate")
    def post(self, request: Request, pk: int) -> Response:
        """Move the domain to another host; `POST /api/v1/jobs/<id>/cancel/` stops it."""
        domain = self.domain(request, pk)
        return job_accepted(services.migrate(self.actor(), domain, self.move(request.data)))


class EvacuateView(APIView):
    @extend_schema(request=None, responses=JOB_ACCEPTED, operation_id="hosts_evacuate")
    def post(self, request: Request, pk: int) -> Response:
        """Put the host in maintenance and move every running domain to the other hosts."""
        return job_accepted(services.evacuate(Actor.from_request(request, "api"), host_or_404(request, pk)))


class MaintenanceView(APIView):
    @extend_schema(request=MaintenanceSerializer, responses=HostSerializer, operation_id="hosts_maintenance")
    def post(self, request: Request, pk: int) -> Response:
        """Start or end maintenance: while it lasts, nothing new is placed on the host."""
        host = host_or_404(request, pk)  # before the input is read: anyone else hears 404, not 400
        data = MaintenanceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host = services.set_maintenance(Actor.from_request(request, "api"), host, data.validated_data["enabled"])
        return Response(HostSerializer(host).data)


urlpatterns = [
    path("domains/<int:pk>/migrate/check/", CheckView.as_view(), name="domain-migrate-check"),
    path("domains/<int:pk>/migrate/", MigrateView.as_view(), name="domain-migrate"),
    path("hosts/<int:pk>/evacuate/", EvacuateView.as_view(), name="host-evacuate"),
    path("hosts/<int:pk>/maintenance/", MaintenanceView.as_view(), name="host-maintenance"),
]
