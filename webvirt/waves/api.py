"""REST API for clone waves: administrators only (anyone else hears 404)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.catalog.models import Template
from webvirt.waves import services
from webvirt.waves.models import Wave


class WaveSerializer(serializers.ModelSerializer):
    template_name = serializers.CharField(source="template.name", read_only=True, default=None)
    group: serializers.SlugRelatedField[Group] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    users: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(many=True, slug_field="username",
                                                                             read_only=True)

    class Meta:
        model = Wave
        fields = ["id", "name", "template", "template_name", "group", "users", "per_user", "start_at", "end_at",
                  "name_pattern", "mode", "state", "message", "planned", "made", "running", "booted", "failed",
                  "jobs", "created", "started", "ended"]
        read_only_fields = fields


class WaveInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    template = serializers.PrimaryKeyRelatedField(queryset=Template.objects.select_related("host"))
    group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False,
                                         allow_null=True, default=None)
    users = serializers.SlugRelatedField(many=True, slug_field="username", required=False,
                                         queryset=get_user_model().objects.all())
    per_user = serializers.IntegerField(required=False, default=1, min_value=1, max_value=services.MAX_PER_USER)
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField()
    name_pattern = serializers.CharField(max_length=80)
    mode = serializers.ChoiceField(choices=["linked", "full"], required=False, default="linked")


def _data(values: dict[str, Any]) -> services.WaveData:
    name = values.get("name") or f"{values['template'].name} {values['start_at']:%Y-%m-%d %H:%M}"
    return services.WaveData(name=name, template=values["template"], start_at=values["start_at"],
                             end_at=values["end_at"], name_pattern=values["name_pattern"], group=values.get("group"),
                             users=list(values.get("users") or []), per_user=values["per_user"], mode=values["mode"])


class WaveViewSet(viewsets.GenericViewSet[Wave]):
    serializer_class = WaveSerializer

    def get_queryset(self) -> QuerySet[Wave]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator asks as nobody
            return Wave.objects.none()
        policy.require_admin(self.request.user)
        return Wave.objects.select_related("template", "group").prefetch_related("users")

    def list(self, request: Request) -> Response:
        """Every wave, the next to start first."""
        return Response(WaveSerializer(self.get_queryset(), many=True).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(WaveSerializer(self.get_object()).data)

    @extend_schema(request=WaveInputSerializer, responses=WaveSerializer)
    def create(self, request: Request) -> Response:
        """Schedule a wave; refused (with the numbers) when it cannot fit."""
        policy.require_admin(request.user)
        data = WaveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wave = services.create_wave(Actor.from_request(request, "api"), _data(data.validated_data))
        return Response(WaveSerializer(wave).data, status=201)

    @extend_schema(request=WaveInputSerializer, responses=WaveSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change a scheduled wave: the fields given replace the wave's."""
        wave = self.get_object()
        data = WaveInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        current = services.data_of(wave)
        fields: dict[str, Any] = {k: (list(v) if k == "users" else v) for k, v in data.validated_data.items()}
        changed = replace(current, **fields)
        wave = services.update_wave(Actor.from_request(request, "api"), wave, changed)
        return Response(WaveSerializer(wave).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a scheduled wave (it stays, cancelled), or forget a past one."""
        wave = services.delete_wave(Actor.from_request(request, "api"), self.get_object())
        return Response(WaveSerializer(wave).data) if wave is not None else Response(status=204)

    @extend_schema(request=None, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        """End a running wave now: its machines are removed with their disks."""
        wave = services.end_now(Actor.from_request(request, "api"), self.get_object())
        return Response(WaveSerializer(wave).data)


router = SimpleRouter()
router.register("waves", WaveViewSet, basename="wave")
urlpatterns = router.urls
