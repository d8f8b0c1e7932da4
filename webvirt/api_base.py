"""What the apps' APIs share: the XML action, the "202 + job" answer, common serializers, and the
base of the viewsets for objects that live only in libvirt (networks, pools, volumes, host
interfaces), whose ids have the form `<host id>:<uuid or name>...`.

The policy is applied by each app's services, which resolve such an id; the viewsets stay thin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO, Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import parsers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.hosts.models import Host
from webvirt.hosts.objects import split_id
from webvirt.jobs.models import Job

ID_REGEX = r"[0-9]+:[^/]+"


def truthy(value: object) -> bool:
    """A query flag's value: `?force=true`, `1`, `yes` or `on`."""
    return str(value).lower() in {"1", "true", "yes", "on"}


def host_or_404(request: Request, pk: int) -> Host:
    """The host `pk`, for a user who may see it; for anyone else it does not exist."""
    return get_object_or_404(policy.visible(request.user, Host.objects.all()), pk=pk)


# Serializers more than one app answers with ---------------------------------------------------------

class LiveObjectSerializer(serializers.Serializer):
    """What every network and pool answer starts with: its composite id, host and libvirt state."""

    id = serializers.CharField(read_only=True)
    host = serializers.IntegerField(read_only=True)
    uuid = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    active = serializers.BooleanField(read_only=True)
    autostart = serializers.BooleanField(read_only=True)
    persistent = serializers.BooleanField(read_only=True)


class XMLSerializer(serializers.Serializer):
    xml = serializers.CharField(max_length=1024 * 1024, trim_whitespace=False)


class AutostartSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class JobAcceptedSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    url = serializers.CharField(help_text="Follow the job here.")


JOB_ACCEPTED = {202: JobAcceptedSerializer}  # the schema of `job_accepted`'s answer


def job_accepted(job: Job) -> Response:
    """The answer of a request a job carries out: 202, the job's id and where to follow it."""
    return Response({"job": job.pk, "url": f"/api/v1/jobs/{job.pk}/"}, status=202)


class FieldsOrXMLSerializer(serializers.Serializer):
    """Defining a live object from a form's fields or from `xml`; `start` (default true) starts it."""

    neither = "Give the object's XML, or at least its name."  # each kind says what its fields need

    xml = serializers.CharField(required=False, allow_blank=True, max_length=1024 * 1024, trim_whitespace=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    start = serializers.BooleanField(default=True)
    autostart = serializers.BooleanField(default=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if not (data.get("xml") or "").strip() and not (data.get("name") or "").strip():
            raise serializers.ValidationError(self.neither)
        return data

    def uses_xml(self) -> bool:
        """Was XML given? Then it defines the object, and the fields are not read."""
        return bool((self.validated_data.get("xml") or "").strip())


class RawXMLParser(parsers.BaseParser):
    """Accepts a bare XML body (Content-Type: application/xml) as well as JSON {"xml": ...}."""

    media_type = "application/xml"

    def parse(self, stream: IO[Any], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> dict[str, str]:
        return {"xml": stream.read().decode("utf-8", errors="replace")}


# The XML action ------------------------------------------------------------------------------------

class XMLActionMixin:
    """What `xml_action` asks of a viewset: find the object, read its XML, replace it.

    `xml_target` runs before the body is validated, so an object the user may not see answers 404
    whatever was sent; by default the target is the id itself (live objects' services resolve it).
    """

    def xml_target(self, pk: str) -> Any:
        return pk

    def read_xml(self, target: Any) -> str:
        raise NotImplementedError

    def write_xml(self, target: Any, xml: str) -> dict[str, Any]:
        """Replace the definition; the answer's body (at least `{"xml": ...}`)."""
        raise NotImplementedError


def xml_action(doc: str, writable: bool = True) -> Callable[..., Response]:
    """`GET /<object>/{id}/xml/` (and, when `writable`, `PUT` with `{"xml": ...}` or a raw XML body)."""

    def xml(self: XMLActionMixin, request: Request, pk: str) -> Response:
        target = self.xml_target(pk)
        if writable and request.method == "PUT":
            data = XMLSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            return Response(self.write_xml(target, data.validated_data["xml"]))
        return Response({"xml": self.read_xml(target)})

    xml.__doc__ = doc
    built = action(detail=True, methods=["get", "put"] if writable else ["get"])(xml)
    if writable:
        built = extend_schema(methods=["PUT"], request=XMLSerializer, responses=XMLSerializer)(built)
    return extend_schema(methods=["GET"], responses=XMLSerializer)(built)


# Live objects -------------------------------------------------------------------------------------

class LiveObjectViewSet(viewsets.ViewSet):
    lookup_value_regex = ID_REGEX
    parser_classes = [parsers.JSONParser, RawXMLParser, parsers.FormParser, parsers.MultiPartParser]

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")

    def split(self, pk: str, parts: int = 2) -> tuple[Host, list[str]]:
        """The host of the id `pk` and the id's keys; an id on a host the user may not manage is not found.

        No libvirt call: for answers that only need the host, after the service did the work.
        """
        return split_id(self.request.user, pk, parts)
