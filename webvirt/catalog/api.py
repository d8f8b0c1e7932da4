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
from webvirt.catalog import quotas, services, warm
from webvirt.catalog.models import Template, WarmMachine
from webvirt.domains.api import DomainSerializer
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
                  "network", "clone_pool", "max_lifetime_days", "users", "groups", "created", "warm_count",
                  "boot_marker"]
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


class WarmSizeSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0, max_value=warm.MAX_WARM,
                                     help_text="How many warm machines the template keeps; 0: none.")
    boot_marker = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True,
                                        default=None, help_text="The guest's ready line on its serial console.")


class WarmMachineSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="domain.name", read_only=True)
    handed_to: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username",
                                                                                read_only=True)

    class Meta:
        model = WarmMachine
        fields = ["domain", "name", "status", "title", "handed_to", "created", "ready_at", "handed_at"]
        read_only_fields = fields


def _pool(template: Template) -> dict[str, Any]:
    status = warm.status(template)
    return {"size": status.size, "warm": status.warm, "booting": status.booting, "handed_out": status.handed_out,
            "budget_mib": status.budget_mib, "budget_used_mib": status.budget_used_mib,
            "refill_job": status.refill.pk if status.refill else None,
            "machines": WarmMachineSerializer(status.machines, many=True).data}


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

    @extend_schema(request=CloneSerializer, responses={**JOB_ACCEPTED, 201: DomainSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str | None = None) -> Response:
        """Clone the template `count` times: 202 and the job that does it. A request for one running
        linked clone of a template with a warm pool is answered at once from the pool when a machine
        is ready: 201, `"warm": true` and the domain, whose `title` is the name asked for."""
        data = CloneSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = services.request_clones(Actor.from_request(request, "api"), self.get_object(),
                                         services.CloneRequest(**data.validated_data))
        if answer.domain is not None:
            return Response({"warm": True, "message": answer.message, "title": answer.domain.warm.title,
                             "domain": DomainSerializer(answer.domain).data}, status=201)
        assert answer.job is not None
        response = job_accepted(answer.job)
        response.data.update({"warm": False, "message": answer.message})
        return response

    @extend_schema(request=WarmSizeSerializer, responses=dict)
    @action(detail=True, methods=["get", "post"])
    def warm(self, request: Request, pk: str | None = None) -> Response:
        """The template's warm pool (administrators): its machines and the budget; POST sets its size."""
        policy.require_admin(request.user)
        template = self.get_object()
        if request.method == "POST":
            data = WarmSizeSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            warm.set_size(Actor.from_request(request, "api"), template, data.validated_data["count"],
                          data.validated_data["boot_marker"])
        return Response(_pool(template))

    @action(detail=False, methods=["get"])
    def quota(self, request: Request) -> Response:
        """What the requesting user may still use (null: no limit)."""
        return Response(quotas.remaining(policy.signed_in(request)))
