"""REST API for hosts. Secrets are write-only: the API says whether one is stored, never what it is."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.services import state_counts, state_counts_by_host
from webvirt.hosts import services
from webvirt.hosts.models import Host


class HostSerializer(serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                     style={"input_type": "password"})
    ssh_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    clear_credentials = serializers.BooleanField(write_only=True, required=False, default=False)
    has_password = serializers.BooleanField(read_only=True)
    has_ssh_key = serializers.BooleanField(read_only=True)
    domain_counts = serializers.SerializerMethodField()

    class Meta:
        model = Host
        fields = ["id", "name", "uri", "description", "username", "password", "ssh_key", "clear_credentials",
                  "has_password", "has_ssh_key", "status", "status_reason", "status_changed", "facts",
                  "facts_updated", "domain_counts", "maintenance", "migration_uri", "created", "updated"]
        read_only_fields = ["status", "status_reason", "status_changed", "facts", "facts_updated", "maintenance",
                            "created", "updated"]
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}

    def get_domain_counts(self, host: Host) -> dict[str, int]:
        counted = self.context.get("domain_counts")  # a list's counts, made in one query
        return counted[host.pk] if counted and host.pk in counted else state_counts(host.domains.all())

    def to_data(self, instance: Host | None = None) -> services.HostData:
        values = {**({"name": instance.name, "uri": instance.uri, "description": instance.description,
                      "username": instance.username, "migration_uri": instance.migration_uri} if instance else {}),
                  **self.validated_data}
        return services.HostData(**{k: v for k, v in values.items() if k in services.HostData.__dataclass_fields__})


class HostViewSet(viewsets.ModelViewSet[Host]):
    serializer_class = HostSerializer

    def get_queryset(self) -> QuerySet[Host]:
        return policy.visible(self.request.user, Host.objects.all())

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        hosts = list(page if page is not None else queryset)
        context = {**self.get_serializer_context(), "domain_counts": state_counts_by_host([h.pk for h in hosts])}
        data = HostSerializer(hosts, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = HostSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        host = services.create_host(Actor.from_request(request, "api"), serializer.to_data())
        return Response(self.get_serializer(host).data, status=201)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        host = self.get_object()
        serializer = HostSerializer(host, data=request.data, partial=kwargs.get("partial", False),
                                    context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        host = services.update_host(Actor.from_request(request, "api"), host, serializer.to_data(host))
        return Response(self.get_serializer(host).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_host(Actor.from_request(request, "api"), self.get_object())
        return Response(status=204)
