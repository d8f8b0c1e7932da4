"""REST API for templates: the catalog, making a template, and cloning."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import JOB_ACCEPTED, job_accepted
from webvirt.catalog import quotas, services
from webvirt.catalog.models import Template
from webvirt.domains.models import Domain
from webvirt.virt import clone as virt_clone


class TemplateSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    disk_gib = serializers.FloatField(read_only=True)
    users: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(many=True, slug_field="username",
                                                                             read_only=True)
    groups: serializers.SlugRelatedField[Group] = serializers.SlugRelatedField(many=True, slug_field="name",
                                                                               read_only=True)

    class Meta:
        model = Template
        fields = ["id", "name", "description", "os", "host", "host_name", "vcpus", "memory_mib", "disk_gib",
                  "network", "clone_pool", "max_lifetime_days", "users", "groups", "created"]
        read_only_fields = fields


class MakeTemplateSerializer(serializers.Serializer):
    domain = serializers.IntegerField(help_text="A shut-off domain's id.")
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    os = serializers.CharField(required=False, allow_blank=True, default="")
    max_lifetime_days = serializers.IntegerField(required=False, min_value=1, max_value=3650, default=30)
    users = serializers.SlugRelatedField(many=True, slug_field="username", required=False,
                                         queryset=get_user_model().objects.all())
    groups = serializers.SlugRelatedField(many=True, slug_field="name", required=False, queryset=Group.objects.all())


class CloneSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    name_pattern = serializers.CharField(max_length=80)
    mode = serializers.ChoiceField(choices=services.MODES, default="linked")
    start = serializers.BooleanField(default=True)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None,
        help_text="When the clones are removed; required (within the template's lifetime) unless you are an "
                  "administrator.")
    first = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                     max_value=virt_clone.MAX_NUMBER,
                                     help_text="The first number for {n}; omitted: the first after names taken.")


class TemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                      viewsets.GenericViewSet[Template]):
    serializer_class = TemplateSerializer

    def get_queryset(self) -> QuerySet[Template]:
        return policy.visible(self.request.user, Template.objects.select_related("host")
                              .prefetch_related("users", "groups"))

    @extend_schema(request=MakeTemplateSerializer, responses=TemplateSerializer)
    def create(self, request: Request) -> Response:
        """Make a template from a shut-off domain."""
        data = MakeTemplateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        domain = policy.visible(request.user, Domain.objects.select_related("host")).filter(pk=v["domain"]).first()
        if domain is None:
            return Response({"error": "There is no such domain.", "code": "not_found"}, status=404)
        template = services.make_template(Actor.from_request(request, "api"), domain, services.TemplateData(
            name=v["name"], description=v["description"], os=v["os"], max_lifetime_days=v["max_lifetime_days"],
            users=v.get("users"), groups=v.get("groups")))
        return Response(TemplateSerializer(template).data, status=201)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_template(Actor.from_request(request, "api"), self.get_object())
        return Response(status=204)

    @extend_schema(request=CloneSerializer, responses=JOB_ACCEPTED)
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str | None = None) -> Response:
        """Clone the template `count` times; answers the job that does it."""
        data = CloneSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.clone_template(Actor.from_request(request, "api"), self.get_object(),
                                      services.CloneRequest(**data.validated_data))
        return job_accepted(job)

    @action(detail=False, methods=["get"])
    def quota(self, request: Request) -> Response:
        """What the requesting user may still use (null: no limit)."""
        return Response(quotas.remaining(policy.signed_in(request)))
