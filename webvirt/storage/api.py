"""REST API for storage pools and volumes.

Pools are listed and created under their host (`/hosts/<id>/pools/`) and acted on by their id
`<host>:<pool uuid>`; volumes are listed and created under their pool (`/pools/<id>/volumes/`) and
acted on by their id `<host>:<pool uuid>:<name>`. Copying, uploading and downloading answer 202 with
the job that does the work (follow it at `/api/v1/jobs/<job>/`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import parsers, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from webvirt.accounts.policy import Actor
from webvirt.api_base import (
    JOB_ACCEPTED,
    AutostartSerializer,
    FieldsOrXMLSerializer,
    LiveObjectSerializer,
    LiveObjectViewSet,
    XMLActionMixin,
    host_or_404,
    job_accepted,
    truthy,
    xml_action,
)
from webvirt.hosts.models import Host
from webvirt.storage import services
from webvirt.virt.storage import PoolInfo, VolumeInfo
from webvirt.virt.storagexml import POOL_TYPES, VOLUME_FORMATS, PoolSpec


class PoolSerializer(LiveObjectSerializer):
    type = serializers.CharField(read_only=True)
    state = serializers.CharField(read_only=True)
    capacity = serializers.IntegerField(read_only=True, help_text="bytes")
    allocation = serializers.IntegerField(read_only=True, help_text="bytes")
    available = serializers.IntegerField(read_only=True, help_text="bytes")
    used_percent = serializers.IntegerField(read_only=True)
    target_path = serializers.CharField(read_only=True)
    # `Any`: the stubs see `Field.source` here; DRF takes declared fields off the class, so no clash at run time.
    source: Any = serializers.CharField(read_only=True)
    volumes = serializers.IntegerField(read_only=True, allow_null=True)


def pool_data(host: Host, info: PoolInfo) -> dict:
    return {"id": services.pool_id(host, info), "host": host.pk, **info.as_dict()}


class CreatePoolSerializer(FieldsOrXMLSerializer):
    """Either the form's fields (name, type, target_path...) or `xml`; `start` (default true) starts it."""

    neither = "Give the pool's XML, or at least its name, type and path."
    type = serializers.ChoiceField(choices=POOL_TYPES, default="dir")
    target_path = serializers.CharField(required=False, allow_blank=True, default="")
    source_host = serializers.CharField(required=False, allow_blank=True, default="")
    source_path = serializers.CharField(required=False, allow_blank=True, default="")
    source_name = serializers.CharField(required=False, allow_blank=True, default="")
    build = serializers.BooleanField(default=False, help_text="Create the directory (or format the device) first.")

    def spec(self) -> PoolSpec | None:
        if self.uses_xml():
            return None
        d = self.validated_data
        return PoolSpec(name=d["name"], type=d["type"], target_path=d["target_path"], source_host=d["source_host"],
                        source_path=d["source_path"], source_name=d["source_name"])


class VolumeSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200)
    format = serializers.ChoiceField(choices=VOLUME_FORMATS, default="qcow2")
    capacity_mib = serializers.IntegerField(min_value=1, write_only=True)
    pool = serializers.CharField(read_only=True)
    pool_name = serializers.CharField(read_only=True)
    path = serializers.CharField(read_only=True)
    capacity = serializers.IntegerField(read_only=True, help_text="bytes")
    allocation = serializers.IntegerField(read_only=True, help_text="bytes")
    backing_path = serializers.CharField(read_only=True)
    used_by = serializers.ListField(child=serializers.CharField(), read_only=True)
    backs = serializers.ListField(child=serializers.CharField(), read_only=True)


def volume_data(host: Host, info: VolumeInfo) -> dict:
    data = info.as_dict()
    data.pop("pool_uuid")
    return {"id": services.volume_id(host, info), "pool": f"{host.pk}:{info.pool_uuid}", **data}


class ResizeSerializer(serializers.Serializer):
    capacity_mib = serializers.IntegerField(min_value=1)


class CloneSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="The new volume's name; the file's name when empty.")


class HostPoolsView(APIView):
    """The storage pools of one host (read live), and defining a new one."""

    @extend_schema(responses=PoolSerializer(many=True), operation_id="host_pools_list")
    def get(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        return Response([pool_data(host, p) for p in services.list_pools(Actor.from_request(request, "api"), host)])

    @extend_schema(request=CreatePoolSerializer, responses=PoolSerializer, operation_id="host_pools_create")
    def post(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        data = CreatePoolSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        info = services.create_pool(Actor.from_request(request, "api"), host, spec=data.spec(),
                                    xml=d.get("xml") or "", start=d["start"], build=d["build"],
                                    autostart=d["autostart"])
        return Response(pool_data(host, info), status=201)


class PoolViewSet(XMLActionMixin, LiveObjectViewSet):
    """One storage pool, by its id `<host id>:<uuid>`."""

    serializer_class = PoolSerializer

    def _answer(self, pk: str, info: PoolInfo) -> Response:
        return Response(pool_data(self.split(pk)[0], info))  # the host from the id: no second libvirt call

    def retrieve(self, request: Request, pk: str) -> Response:
        host, info = services.get_pool(self.actor(), pk)
        return Response(pool_data(host, info))

    @extend_schema(operation_id="pools_delete", parameters=[
        OpenApiParameter("delete_volumes", bool, description="Also delete every volume in it (and its directory).")])
    def destroy(self, request: Request, pk: str) -> Response:
        """Stop and undefine the pool; refused (409) while a domain uses one of its volumes."""
        deleted = services.delete_pool(self.actor(), pk, truthy(request.query_params.get("delete_volumes", "")))
        return Response({"deleted_volumes": deleted})

    @extend_schema(request=AutostartSerializer, responses=PoolSerializer)
    @action(detail=True, methods=["post"])
    def autostart(self, request: Request, pk: str) -> Response:
        data = AutostartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._answer(pk, services.set_pool_autostart(self.actor(), pk, data.validated_data["enabled"]))

    xml = xml_action("The pool's definition; PUT replaces it after libvirt validates it.")

    def read_xml(self, target: str) -> str:
        return services.pool_xml(self.actor(), target)

    def write_xml(self, target: str, xml: str) -> dict[str, Any]:
        services.update_pool_xml(self.actor(), target, xml)
        return {"xml": self.read_xml(target)}

    @extend_schema(methods=["GET"], responses=VolumeSerializer(many=True))
    @extend_schema(methods=["POST"], request=VolumeSerializer, responses=VolumeSerializer)
    @action(detail=True, methods=["get", "post"])
    def volumes(self, request: Request, pk: str) -> Response:
        """The pool's volumes (format, sizes, backing file, the domains using each); POST creates one."""
        host, _ = services.get_pool(self.actor(), pk)
        if request.method == "POST":
            data = VolumeSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            d = data.validated_data
            info = services.create_volume(self.actor(), pk, d["name"], d["format"], d["capacity_mib"])
            return Response(volume_data(host, info), status=201)
        return Response([volume_data(host, v) for v in services.list_volumes(self.actor(), pk)])

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses=JOB_ACCEPTED)
    @action(detail=True, methods=["post"], parser_classes=[parsers.MultiPartParser, parsers.FormParser])
    def upload(self, request: Request, pk: str) -> Response:
        """Upload a file as a new (raw) volume: a job streams it into the pool through libvirt."""
        data = UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return job_accepted(services.start_upload(self.actor(), pk, data.validated_data["name"],
                                                data.validated_data["file"]))


def _pool_action(verb: str) -> Callable[..., Response]:
    def run(self: PoolViewSet, request: Request, pk: str) -> Response:
        return self._answer(pk, services.pool_action(self.actor(), pk, verb))

    run.__name__ = f"pool_{verb}"
    run.__doc__ = f"{verb.capitalize()} the pool."
    run = action(detail=True, methods=["post"], url_path=verb, url_name=verb)(run)
    return extend_schema(request=None, responses=PoolSerializer, operation_id=f"pools_{verb}")(run)


for _verb in services.POOL_ACTIONS:
    setattr(PoolViewSet, f"pool_{_verb}", _pool_action(_verb))


class VolumeViewSet(XMLActionMixin, LiveObjectViewSet):
    """One volume, by its id `<host id>:<pool uuid>:<name>`."""

    serializer_class = VolumeSerializer

    def retrieve(self, request: Request, pk: str) -> Response:
        host, info = services.get_volume(self.actor(), pk)
        return Response(volume_data(host, info))

    @extend_schema(operation_id="volumes_delete")
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the volume; refused (409) while a domain uses it or a linked clone is layered on it."""
        return Response({"deleted": services.delete_volume(self.actor(), pk)})

    @extend_schema(request=ResizeSerializer, responses=VolumeSerializer)
    @action(detail=True, methods=["post"])
    def resize(self, request: Request, pk: str) -> Response:
        data = ResizeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        info = services.resize_volume(self.actor(), pk, data.validated_data["capacity_mib"])
        return Response(volume_data(self.split(pk, 3)[0], info))

    @extend_schema(request=CloneSerializer, responses=JOB_ACCEPTED)
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str) -> Response:
        """Copy the volume (same pool, new name) in a job."""
        data = CloneSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return job_accepted(services.start_clone(self.actor(), pk, data.validated_data["name"]))

    @extend_schema(request=None, responses=JOB_ACCEPTED)
    @action(detail=True, methods=["post"])
    def download(self, request: Request, pk: str) -> Response:
        """Start a job that streams the volume into a file; the finished job's result has its `url`."""
        return job_accepted(services.start_download(self.actor(), pk))

    xml = xml_action("The volume's definition (read only: resize it, or copy it under another name).", writable=False)

    def read_xml(self, target: str) -> str:
        return services.volume_xml(self.actor(), target)


router = SimpleRouter()
router.register("pools", PoolViewSet, basename="pool")
router.register("volumes", VolumeViewSet, basename="volume")

urlpatterns = [
    path("hosts/<int:host_pk>/pools/", HostPoolsView.as_view(), name="host-pools"),
    *router.urls,
]
