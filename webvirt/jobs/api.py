"""REST API for jobs: list, detail (state, progress, message...), cancel and retry."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.filtering import FilterSet
from webvirt.jobs import services
from webvirt.jobs.models import Job


class JobFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=Job.STATES, empty_label="Any state")
    kind = django_filters.CharFilter()

    class Meta:
        model = Job
        fields = ["state", "kind"]


class JobSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.get_username", read_only=True, default=None)
    duration = serializers.FloatField(read_only=True)
    params = serializers.JSONField(source="shown_params", read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "title", "user", "host", "target_type", "target_id", "target_repr", "state",
                  "progress", "message", "log", "error", "result", "params", "cancel_requested", "attempts",
                  "created", "started", "finished", "duration"]
        read_only_fields = fields


class JobViewSet(viewsets.ReadOnlyModelViewSet[Job]):
    serializer_class = JobSerializer
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[Job]:
        return policy.visible(self.request.user, Job.objects.select_related("user"))

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.cancel_job(Actor.from_request(request, "api"), self.get_object())
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = services.retry_job(Actor.from_request(request, "api"), self.get_object())
        return Response(JobSerializer(job).data, status=201)
