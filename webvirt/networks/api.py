"""REST API for virtual networks and host interfaces.

Listed and created under their host (`/hosts/<id>/networks/`, `/hosts/<id>/interfaces/`), acted on
by their own composite id (`/networks/<host>:<uuid>/`, `/interfaces/<host>:<name>/`).
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import parsers, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from webvirt.accounts.policy import Actor
from webvirt.api_base import (
    AutostartSerializer,
    FieldsOrXMLSerializer,
    LiveObjectSerializer,
    LiveObjectViewSet,
    RawXMLParser,
    XMLActionMixin,
    host_or_404,
    truthy,
    xml_action,
)
from webvirt.hosts.models import Host
from webvirt.hosts.objects import make_id
from webvirt.networks import services
from webvirt.virt.interfaces import InterfaceInfo
from webvirt.virt.networks import NetworkInfo
from webvirt.virt.netxml import MODES, NetworkSpec


class DHCPHostSerializer(serializers.Serializer):
    mac = serializers.RegexField(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$", error_messages={
        "invalid": "Enter a MAC address like 52:54:00:12:34:56."})
    ip = serializers.IPAddressField(protocol="IPv4")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=63)


class NetworkSerializer(LiveObjectSerializer):
    mode = serializers.CharField(read_only=True)
    bridge = serializers.CharField(read_only=True)
    ipv4 = serializers.ListField(child=serializers.CharField(), read_only=True)
    ipv6 = serializers.ListField(child=serializers.CharField(), read_only=True)
    dhcp_ranges = serializers.ListField(child=serializers.CharField(), read_only=True)
    leases = serializers.IntegerField(read_only=True, allow_null=True)


def network_data(host: Host, info: NetworkInfo) -> dict:
    return {"id": make_id(host, info.uuid), "host": host.pk, **info.as_dict()}


class CreateNetworkSerializer(FieldsOrXMLSerializer):
    """Either the form's fields (name, mode, ipv4...) or `xml`; `start` (default true) starts it."""

    neither = "Give the network's XML, or at least its name and addresses."
    mode = serializers.ChoiceField(choices=MODES, default="nat")
    ipv4 = serializers.CharField(required=False, allow_blank=True, default="")
    dhcp_start = serializers.CharField(required=False, allow_blank=True, default="")
    dhcp_end = serializers.CharField(required=False, allow_blank=True, default="")
    ipv6 = serializers.CharField(required=False, allow_blank=True, default="")
    bridge = serializers.CharField(required=False, allow_blank=True, default="")
    hosts = DHCPHostSerializer(many=True, required=False, default=list)

    def spec(self) -> NetworkSpec | None:
        if self.uses_xml():
            return None
        d = self.validated_data
        return NetworkSpec(name=d["name"], mode=d["mode"], ipv4=d["ipv4"], dhcp_start=d["dhcp_start"],
                           dhcp_end=d["dhcp_end"], ipv6=d["ipv6"], bridge=d["bridge"],
                           hosts=[dict(h) for h in d["hosts"]])


class LeaseSerializer(serializers.Serializer):
    mac = serializers.CharField()
    ip = serializers.CharField()
    prefix = serializers.IntegerField()
    hostname = serializers.CharField()
    expires = serializers.CharField()
    domain_uuid = serializers.CharField()
    domain_name = serializers.CharField()
    domain = serializers.IntegerField(allow_null=True, help_text="The domain's id in webvirt, when it knows it.")


class StopSerializer(serializers.Serializer):
    force = serializers.BooleanField(default=False, help_text="Stop it even though running domains use it.")


class HostNetworksView(APIView):
    """The virtual networks of one host (read live), and defining a new one."""

    parser_classes = [parsers.JSONParser, parsers.FormParser, parsers.MultiPartParser]

    @extend_schema(responses=NetworkSerializer(many=True), operation_id="host_networks_list")
    def get(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        infos = services.list_networks(Actor.from_request(request, "api"), host)
        return Response([network_data(host, i) for i in infos])

    @extend_schema(request=CreateNetworkSerializer, responses=NetworkSerializer, operation_id="host_networks_create")
    def post(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        data = CreateNetworkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        info = services.create_network(Actor.from_request(request, "api"), host, spec=data.spec(),
                                       xml=data.validated_data.get("xml") or "",
                                       start=data.validated_data["start"],
                                       autostart=data.validated_data["autostart"])
        return Response(network_data(host, info), status=201)


class NetworkViewSet(XMLActionMixin, LiveObjectViewSet):
    """One network, by its id `<host id>:<uuid>`."""

    serializer_class = NetworkSerializer

    def retrieve(self, request: Request, pk: str) -> Response:
        host, info = services.get_network(self.actor(), pk)
        return Response(network_data(host, info))

    @extend_schema(operation_id="networks_delete",
                   parameters=[OpenApiParameter("force", bool, description="Delete it even though running "
                                                                            "domains use it.")])
    def destroy(self, request: Request, pk: str) -> Response:
        """Stop and undefine the network; refused (409) while running domains use it unless `?force=true`."""
        name = services.delete_network(self.actor(), pk, truthy(request.query_params.get("force", "")))
        return Response({"deleted": name})

    @extend_schema(request=None, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        info = services.run_action(self.actor(), pk, "start")
        return Response(network_data(self.split(pk)[0], info))

    @extend_schema(request=StopSerializer, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        data = StopSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        info = services.run_action(self.actor(), pk, "stop", data.validated_data["force"])
        return Response(network_data(self.split(pk)[0], info))

    @extend_schema(request=AutostartSerializer, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def autostart(self, request: Request, pk: str) -> Response:
        data = AutostartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        info = services.set_autostart(self.actor(), pk, data.validated_data["enabled"])
        return Response(network_data(self.split(pk)[0], info))

    xml = xml_action("The network's definition; PUT replaces it (DHCP host changes reach a running network at once).")

    def read_xml(self, target: str) -> str:
        return services.get_xml(self.actor(), target)

    def write_xml(self, target: str, xml: str) -> dict[str, Any]:
        _info, applied = services.update_xml(self.actor(), target, xml)
        return {"xml": self.read_xml(target), "applied_live": applied}

    @extend_schema(responses=LeaseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def leases(self, request: Request, pk: str) -> Response:
        """DHCP leases: MAC, IP, hostname, expiry, and the domain holding each."""
        found = services.leases(self.actor(), pk)
        if found is None:
            return Response({"error": "This host's libvirt cannot list DHCP leases.", "code": "unsupported"},
                            status=400)
        ids = services.domain_ids(self.split(pk)[0], [le.domain_uuid for le in found if le.domain_uuid])
        return Response([{**le.as_dict(), "domain": ids.get(le.domain_uuid)} for le in found])

    @extend_schema(methods=["GET"], responses=DHCPHostSerializer(many=True))
    @extend_schema(methods=["POST"], request=DHCPHostSerializer, responses=DHCPHostSerializer(many=True))
    @extend_schema(methods=["DELETE"], parameters=[OpenApiParameter("mac", str, required=True)],
                   responses=DHCPHostSerializer(many=True))
    @action(detail=True, methods=["get", "post", "delete"], url_path="dhcp-hosts", url_name="dhcp-hosts")
    def dhcp_hosts(self, request: Request, pk: str) -> Response:
        """Static DHCP entries; adding or removing one changes a running network without a restart."""
        if request.method == "POST":
            data = DHCPHostSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            d = data.validated_data
            services.add_dhcp_host(self.actor(), pk, d["mac"], d["ip"], d["name"])
        elif request.method == "DELETE":
            services.remove_dhcp_host(self.actor(), pk, request.query_params.get("mac", ""))
        return Response(services.dhcp_hosts(self.actor(), pk))


class InterfaceSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    host = serializers.IntegerField(read_only=True)
    name = serializers.CharField()
    mac = serializers.CharField(read_only=True)
    active = serializers.BooleanField(read_only=True)
    type = serializers.CharField(read_only=True)
    addresses = serializers.ListField(child=serializers.CharField(), read_only=True)
    members = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    stp = serializers.BooleanField(write_only=True, default=False)
    start = serializers.BooleanField(write_only=True, default=False)


def interface_data(host: Host, info: InterfaceInfo) -> dict:
    return {"id": make_id(host, info.name), "host": host.pk, **info.as_dict()}


class HostInterfacesView(APIView):
    """The host's own network interfaces; POST defines a bridge (where the host's libvirt can)."""

    @extend_schema(responses=InterfaceSerializer(many=True), operation_id="host_interfaces_list")
    def get(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        return Response([interface_data(host, i) for i in services.list_interfaces(
            Actor.from_request(request, "api"), host)])

    @extend_schema(request=InterfaceSerializer, responses=InterfaceSerializer, operation_id="host_interfaces_create")
    def post(self, request: Request, host_pk: int) -> Response:
        host = host_or_404(request, host_pk)
        data = InterfaceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        info = services.define_bridge(Actor.from_request(request, "api"), host, d["name"], d["members"], d["stp"],
                                      d["start"])
        return Response(interface_data(host, info), status=201)


class InterfaceViewSet(XMLActionMixin, LiveObjectViewSet):
    """One host interface, by its id `<host id>:<name>`."""

    serializer_class = InterfaceSerializer
    parser_classes = [parsers.JSONParser, RawXMLParser]

    def _one(self, pk: str) -> dict:
        host, (name,) = self.split(pk)
        found = [i for i in services.list_interfaces(self.actor(), host) if i.name == name]
        if not found:
            raise NotFound(f"The host has no interface named '{name}'.")
        return interface_data(host, found[0])

    def retrieve(self, request: Request, pk: str) -> Response:
        services.interface_xml(self.actor(), pk)  # policy, and "not found" for a missing interface
        return Response(self._one(pk))

    @extend_schema(operation_id="interfaces_delete")
    def destroy(self, request: Request, pk: str) -> Response:
        services.interface_action(self.actor(), pk, "undefine")
        return Response(status=204)

    @extend_schema(request=None, responses=InterfaceSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        services.interface_action(self.actor(), pk, "start")
        return Response(self._one(pk))

    @extend_schema(request=None, responses=InterfaceSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        services.interface_action(self.actor(), pk, "stop")
        return Response(self._one(pk))

    xml = xml_action("The interface's definition; PUT replaces it after libvirt validates it.")

    def read_xml(self, target: str) -> str:
        return services.interface_xml(self.actor(), target)

    def write_xml(self, target: str, xml: str) -> dict[str, Any]:
        services.update_interface_xml(self.actor(), target, xml)
        return {"xml": self.read_xml(target)}


router = SimpleRouter()
router.register("networks", NetworkViewSet, basename="network")
router.register("interfaces", InterfaceViewSet, basename="interface")

urlpatterns = [
    path("hosts/<int:host_pk>/networks/", HostNetworksView.as_view(), name="host-networks"),
    path("hosts/<int:host_pk>/interfaces/", HostInterfacesView.as_view(), name="host-interfaces"),
    *router.urls,
]
