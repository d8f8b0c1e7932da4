"""REST API for a domain's snapshots: list, take, revert, delete; and reset a linked clone to its template.

Every change answers 202 with the job that carries it out.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts.policy import Actor
from webvirt.api_base import JOB_ACCEPTED, job_accepted, truthy
from webvirt.domains.models import Domain
from webvirt.snapshots import services
from webvirt.ui import visible_or_404
from webvirt.virt.snapshots import KINDS


class SnapshotSerializer(serializers.Serializer):
    name = serializers.CharField()
    # `Any`: the stubs see `Field.parent` here; DRF takes declared fields off the class, so no clash at run time.
    parent: Any = serializers.CharField(allow_null=True)
    description = serializers.CharField()
    created = serializers.IntegerField(help_text="Seconds since the epoch.")
    state = serializers.CharField(help_text="The domain's state when it was taken (disk-snapshot: disks only).")
    kind = serializers.ChoiceField(choices=["internal", "external"])
    memory = serializers.BooleanField()
    current = serializers.BooleanField()
    size_bytes = serializers.IntegerField(allow_null=True)
    depth = serializers.IntegerField()


class TakeSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=63, default="",
                                 help_text="Empty: the date and time.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    memory = serializers.BooleanField(default=False, help_text="Include the memory of a running domain.")
    kind = serializers.ChoiceField(choices=list(KINDS), default="auto")


class TakenSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    url = serializers.CharField()
    kind = serializers.CharField()
    reason = serializers.CharField()


class _SnapshotView(APIView):
    def domain(self, request: Request, pk: int) -> Domain:
        return visible_or_404(request, Domain.objects.select_related("host"), pk)

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")


class SnapshotsView(_SnapshotView):
    @extend_schema(responses=SnapshotSerializer(many=True), operation_id="domains_snapshots_list")
    def get(self, request: Request, pk: int) -> Response:
        """The domain's snapshots, parents before children (`depth` says how far down the tree)."""
        infos = services.list_snapshots(self.actor(), self.domain(request, pk))
        return Response(SnapshotSerializer([i.as_dict() for i in infos], many=True).data)

    @extend_schema(request=TakeSerializer, responses={202: TakenSerializer}, operation_id="domains_snapshots_create")
    def post(self, request: Request, pk: int) -> Response:
        """Take a snapshot; `kind` auto picks internal or external and the answer says which and why."""
        data = TakeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job, chosen = services.take(self.actor(), self.domain(request, pk), services.TakeRequest(**data.validated_data))
        answer = job_accepted(job)
        answer.data.update(kind=chosen.kind, reason=chosen.reason)
        return answer


class SnapshotView(_SnapshotView):
    @extend_schema(request=None, responses=JOB_ACCEPTED, operation_id="domains_snapshots_delete",
                   parameters=[OpenApiParameter("children", bool, description="Delete its children too.")])
    def delete(self, request: Request, pk: int, name: str) -> Response:
        children = truthy(request.query_params.get("children", ""))
        return job_accepted(services.delete(self.actor(), self.domain(request, pk), name, children))


class RevertView(_SnapshotView):
    @extend_schema(request=None, responses=JOB_ACCEPTED, operation_id="domains_snapshots_revert")
    def post(self, request: Request, pk: int, name: str) -> Response:
        """Go back to the snapshot: what was written since is lost."""
        return job_accepted(services.revert(self.actor(), self.domain(request, pk), name))


class ResetView(_SnapshotView):
    @extend_schema(request=None, responses=JOB_ACCEPTED, operation_id="domains_reset_to_template")
    def post(self, request: Request, pk: int) -> Response:
        """Force a linked clone off and discard everything written since it was made, snapshots included."""
        return job_accepted(services.reset_to_template(self.actor(), self.domain(request, pk)))


urlpatterns = [
    path("domains/<int:pk>/snapshots/", SnapshotsView.as_view(), name="domain-snapshots"),
    path("domains/<int:pk>/snapshots/<str:name>/", SnapshotView.as_view(), name="domain-snapshot"),
    path("domains/<int:pk>/snapshots/<str:name>/revert/", RevertView.as_view(), name="domain-snapshot-revert"),
    path("domains/<int:pk>/reset-to-template/", ResetView.as_view(), name="domain-reset-to-template"),
]
