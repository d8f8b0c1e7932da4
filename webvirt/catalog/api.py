"""REST API for templates: the catalog, making a template, and cloning."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import JOB_ACCEPTED, job_accepted
from webvirt.catalog import quotas, seeds, services, warm
from webvirt.catalog.models import Template, WarmMachine
from webvirt.domains.api import DomainSerializer
from webvirt.domains.models import Domain
from webvirt.virt import clone as virt_clone


class CloudInitSerializer(serializers.Serializer):
    """A template's cloud-init settings: every clone gets a NoCloud seed with them (catalog.seeds)."""

    enabled = serializers.BooleanField(default=False)
    user_data = serializers.CharField(required=False, allow_blank=True, default="",
                                      help_text="cloud-config (YAML); the owner's SSH keys are added to it.")
    network_config = serializers.CharField(required=False, allow_blank=True, default="")
    allow_password = serializers.BooleanField(default=False, help_text="Clone requests may carry a password.")
    login_user = serializers.CharField(required=False, allow_blank=True, default="", max_length=32,
                                       help_text="Who gets the keys and the password; empty: the default user.")
    guest_agent = serializers.BooleanField(default=False, help_text="Warm machines get keys through the agent.")
    detach_seed = serializers.BooleanField(default=False, help_text="Remove the seed after the first boot.")

    def to_data(self) -> seeds.CloudInitData:
        return seeds.CloudInitData(**self.validated_data)


class TemplateSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    disk_gib = serializers.FloatField(read_only=True)
    users: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(many=True, slug_field="username",
                                                                             read_only=True)
    groups: serializers.SlugRelatedField[Group] = serializers.SlugRelatedField(many=True, slug_field="name",
                                                                               read_only=True)
    cloud_init = serializers.SerializerMethodField()
    sealed = serializers.SerializerMethodField(help_text="sealing, sealed, or not_sealed (seal_note says why)")

    class Meta:
        model = Template
        fields = ["id", "name", "description", "os", "host", "host_name", "vcpus", "memory_mib", "disk_gib",
                  "network", "clone_pool", "max_lifetime_days", "users", "groups", "created", "warm_count",
                  "boot_marker", "cloud_init", "sealed", "seal_note"]
        read_only_fields = fields

    @extend_schema_field(CloudInitSerializer)
    def get_cloud_init(self, template: Template) -> dict[str, Any]:
        return asdict(seeds.CloudInitData.of(template))

    def get_sealed(self, template: Template) -> str:
        if template.seal_state == "sealing" and template.sealing:
            return "sealing"
        return "sealed" if template.seal_state == "sealed" else "not_sealed"


class TemplateChangeSerializer(serializers.Serializer):
    """What an administrator may change of a template (PATCH: only what is given)."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(allow_blank=True)
    os = serializers.CharField(allow_blank=True)
    max_lifetime_days = serializers.IntegerField(min_value=1, max_value=3650)
    users = serializers.SlugRelatedField(many=True, slug_field="username", queryset=get_user_model().objects.all())
    groups = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Group.objects.all())
    cloud_init = CloudInitSerializer()


class MakeTemplateSerializer(serializers.Serializer):
    domain = serializers.IntegerField(help_text="A shut-off domain's id.")
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    os = serializers.CharField(required=False, allow_blank=True, default="")
    max_lifetime_days = serializers.IntegerField(required=False, min_value=1, max_value=3650, default=30)
    users = serializers.SlugRelatedField(many=True, slug_field="username", required=False,
                                         queryset=get_user_model().objects.all())
    groups = serializers.SlugRelatedField(many=True, slug_field="name", required=False, queryset=Group.objects.all())
    cloud_init = CloudInitSerializer(required=False)
    seal = serializers.BooleanField(default=False, help_text="Seal the disks with virt-sysprep first (a job).")


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
    password = serializers.CharField(required=False, allow_blank=True, default="", write_only=True,
                                     trim_whitespace=False, style={"input_type": "password"},
                                     help_text="The login user's password in the clones, where the template allows "
                                               "one; kept only as a hash.")


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
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

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
        cloud_init = seeds.CloudInitData(**v["cloud_init"]) if "cloud_init" in v else None
        template = services.make_template(Actor.from_request(request, "api"), domain, services.TemplateData(
            name=v["name"], description=v["description"], os=v["os"], max_lifetime_days=v["max_lifetime_days"],
            users=v.get("users"), groups=v.get("groups"), cloud_init=cloud_init, seal=v["seal"]))
        return Response(TemplateSerializer(template).data, status=201)

    @extend_schema(request=TemplateChangeSerializer, responses=TemplateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change a template (administrators): any of its names, grants and cloud-init settings."""
        policy.require_admin(request.user)
        template = self.get_object()
        data = TemplateChangeSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        current = services.TemplateData(name=template.name, description=template.description, os=template.os,
                                        max_lifetime_days=template.max_lifetime_days)
        for key in ("name", "description", "os", "max_lifetime_days", "users", "groups"):
            if key in v:
                setattr(current, key, v[key])
        if "cloud_init" in v:  # what is left out of it stays as it is
            current.cloud_init = replace(seeds.CloudInitData.of(template), **v["cloud_init"])
        services.update_template(Actor.from_request(request, "api"), template, current)
        return Response(TemplateSerializer(Template.objects.get(pk=template.pk)).data)

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
