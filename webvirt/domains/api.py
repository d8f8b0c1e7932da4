"""REST API for domains: the cached list, lifecycle actions, XML, define and undefine."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, parsers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt import changes
from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import (
    AutostartSerializer,
    JobAcceptedSerializer,
    RawXMLParser,
    XMLActionMixin,
    job_accepted,
    xml_action,
)
from webvirt.domains import bulk, services
from webvirt.domains.filters import DomainFilter
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.virt.domains import ACTIONS


def _time(value: datetime | None, zone: tzinfo) -> str | None:
    """What DRF's DateTimeField writes for an aware datetime (the database's): ISO 8601 in the current time
    zone, "Z" for UTC. DRF's own field takes five times as long (it checks and converts for every value)."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _float(value: float | None) -> float | None:
    return float(value) if value is not None else None


# What the list reads of each row: DomainSerializer's fields, by column (`.values()`, no model instances).
LIST_COLUMNS = ("id", "uuid", "name", "host_id", "host__name", "state", "reason", "vcpus", "memory_mib", "autostart",
                "persistent", "graphics", "state_changed", "addresses", "owner_id", "template_id", "linked",
                "is_template", "expires_at", "cpu_percent", "memory_used_mib")


def list_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """DomainSerializer's answer for rows of `LIST_COLUMNS`, without DRF's per-field machinery or model
    instances (together half of a list request's time for 50 rows): the same keys in the same order, the
    same values. A test compares the two."""
    zone = timezone.get_current_timezone()
    return [{"id": row["id"], "uuid": row["uuid"], "name": row["name"], "host": row["host_id"],
             "host_name": row["host__name"], "state": row["state"], "reason": row["reason"], "vcpus": row["vcpus"],
             "memory_mib": row["memory_mib"], "autostart": bool(row["autostart"]),
             "persistent": bool(row["persistent"]), "graphics": row["graphics"],
             "state_changed": _time(row["state_changed"], zone), "addresses": row["addresses"],
             "owner": row["owner_id"], "template": row["template_id"], "linked": bool(row["linked"]),
             "is_template": bool(row["is_template"]), "expires_at": _time(row["expires_at"], zone),
             "cpu_percent": _float(row["cpu_percent"]), "memory_used_mib": _float(row["memory_used_mib"])}
            for row in rows]


class DomainSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = Domain
        fields = ["id", "uuid", "name", "host", "host_name", "state", "reason", "vcpus", "memory_mib",
                  "autostart", "persistent", "graphics", "state_changed", "addresses", "owner", "template",
                  "linked", "is_template", "expires_at", "cpu_percent", "memory_used_mib"]
        read_only_fields = fields


class DefineSerializer(serializers.Serializer):
    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all())
    xml = serializers.CharField(max_length=1024 * 1024, trim_whitespace=False)
    transient = serializers.BooleanField(default=False)


class ExpirySerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(allow_null=True)


class BulkSerializer(serializers.Serializer):
    """Documents the body only: webvirt.domains.bulk checks it, so every mistake gets its own sentence."""

    ids = serializers.ListField(child=serializers.IntegerField(), required=False,
                                help_text=f"The domains, by id (at most {bulk.MAX_SELECTION:,}).")
    filter = serializers.DictField(required=False, help_text="Or the list's filter: search, host, state.")
    action = serializers.ChoiceField(choices=list(bulk.ACTIONS))
    args = serializers.DictField(required=False, help_text='snapshot: {"name", "description"}; '
                                                           'extend: {"expires_at"}; the others none.')


class BulkAcceptedSerializer(JobAcceptedSerializer):
    count = serializers.IntegerField(help_text="How many domains the job acts on.")


class DomainViewSet(XMLActionMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                    viewsets.GenericViewSet[Domain]):
    serializer_class = DomainSerializer
    filterset_class = DomainFilter
    parser_classes = [parsers.JSONParser, RawXMLParser, parsers.FormParser, parsers.MultiPartParser]

    def get_queryset(self) -> QuerySet[Domain]:
        return policy.visible(self.request.user, Domain.objects.select_related("host"))

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Kept until a domain, host or user changes (webvirt.changes), per user, URL and the time zone its
        # times are written in: the same question asked again costs a read of the change counters.
        key = ("domains.list", request.user.pk, request.build_absolute_uri(), timezone.get_current_timezone_name())
        return Response(changes.memo(key, self.list_answer, changes.DOMAIN_LIST))

    def list_answer(self) -> Any:
        # Rows as columns (`.values()`), written by list_rows: DomainSerializer's JSON at half the cost.
        rows = self.filter_queryset(self.get_queryset()).values(*LIST_COLUMNS)
        page = self.paginate_queryset(rows)
        if page is None:
            return list_rows(rows)
        return self.get_paginated_response(list_rows(page)).data

    @extend_schema(request=DefineSerializer, responses=DomainSerializer)
    def create(self, request: Request) -> Response:
        """Define a persistent domain from XML, or create a transient one with `"transient": true`."""
        data = DefineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # services.define checks policy itself, inside the audit record, so a refusal is recorded too.
        row = services.define(self.actor(), data.validated_data["host"], data.validated_data["xml"],
                              data.validated_data["transient"])
        return Response(DomainSerializer(row).data, status=201)

    @extend_schema(operation_id="domains_undefine",
                   parameters=[OpenApiParameter("delete_volumes", bool, description="Also delete its volumes.")])
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Undefine the domain (it must be shut off); `?delete_volumes=true` deletes its disks too."""
        delete_volumes = request.query_params.get("delete_volumes", "").lower() in {"1", "true", "yes"}
        deleted = services.undefine(self.actor(), self.get_object(), delete_volumes)
        return Response({"deleted_volumes": deleted})

    @extend_schema(request=ExpirySerializer, responses=DomainSerializer)
    @action(detail=True, methods=["post"])
    def expiry(self, request: Request, pk: str | None = None) -> Response:
        """Move a clone's expiry (owners within the template's limit; null, admins only, removes it)."""
        from webvirt.catalog.services import extend_expiry

        data = ExpirySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = extend_expiry(self.actor(), self.get_object(), data.validated_data["expires_at"])
        return Response(DomainSerializer(row).data)

    @extend_schema(request=BulkSerializer, responses={202: BulkAcceptedSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """One action on many domains (by id, or all that match a filter), as one job with a line per
        domain; each is checked against the policy when the job reaches it."""
        body = request.data if isinstance(request.data, dict) else {}
        job = bulk.start(self.actor(), str(body.get("action", "")), body.get("args", {}),
                         ids=body.get("ids"), filters=body.get("filter"))
        answer = job_accepted(job)
        answer.data["count"] = len(job.params["ids"])  # how many it acts on (a filter says so only here)
        return answer

    @extend_schema(request=None, responses={200: {"type": "object"}})
    @action(detail=True, methods=["post"])
    def remove(self, request: Request, pk: str | None = None) -> Response:
        """Force off, undefine and delete the volumes of a domain (what an owner's Delete does)."""
        deleted = services.remove(self.actor(), self.get_object())
        return Response({"deleted_volumes": deleted})

    @extend_schema(request=AutostartSerializer, responses=DomainSerializer)
    @action(detail=True, methods=["post"])
    def autostart(self, request: Request, pk: str | None = None) -> Response:
        data = AutostartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.set_autostart(self.actor(), self.get_object(), data.validated_data["enabled"])
        return Response(DomainSerializer(row).data)

    xml = xml_action("The domain's XML; PUT replaces its persistent definition after libvirt validates it.")

    def xml_target(self, pk: str) -> Domain:
        return self.get_object()

    def read_xml(self, target: Domain) -> str:
        return services.get_xml(self.actor(), target)

    def write_xml(self, target: Domain, xml: str) -> dict[str, Any]:
        domain = services.update_xml(self.actor(), target, xml)
        # Answer the definition just saved: a running domain's live XML shows it only after a restart.
        return {"xml": services.get_xml(self.actor(), domain, inactive=True)}


def _lifecycle_action(verb: str) -> Callable[..., Response]:
    """`POST /domains/{id}/<verb>/`: one route per action, so the schema names each path."""

    def run(self: DomainViewSet, request: Request, pk: str | None = None) -> Response:
        row = services.run_action(self.actor(), self.get_object(), verb)
        return Response(DomainSerializer(row).data)

    # The name must be set before @action reads it; `destroy` is taken by undefine.
    run.__name__ = f"lifecycle_{verb}"
    run.__doc__ = f"{ACTIONS[verb].label.capitalize()} the domain (lifecycle action `{verb}`)."
    run = action(detail=True, methods=["post"], url_path=verb, url_name=verb)(run)
    return extend_schema(request=None, responses=DomainSerializer, operation_id=f"domains_{verb}")(run)


for _verb in ACTIONS:
    setattr(DomainViewSet, f"lifecycle_{_verb}", _lifecycle_action(_verb))
