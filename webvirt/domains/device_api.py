"""REST API for a domain's devices and addresses: attach/detach disks and interfaces, CD-ROM media."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains import devices
from webvirt.domains.addresses import refresh_addresses
from webvirt.domains.models import Domain
from webvirt.ui import visible_or_404
from webvirt.virt.devices import BUSES


class AttachDiskSerializer(serializers.Serializer):
    volume = serializers.CharField(help_text="The volume's path on the host (a volume's `path`).")
    bus = serializers.ChoiceField(choices=list(BUSES), default="virtio")
    readonly = serializers.BooleanField(default=False)


class AttachInterfaceSerializer(serializers.Serializer):
    network = serializers.CharField(help_text="A libvirt network's name on the domain's host.")
    model = serializers.ChoiceField(choices=["virtio", "e1000", "rtl8139"], default="virtio")
    mac = serializers.CharField(required=False, allow_blank=True, default="")


class MediaSerializer(serializers.Serializer):
    target = serializers.CharField(help_text="The CD-ROM's target device, e.g. hdc or sda.")
    path = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="An ISO volume's path; empty ejects.")


class DeviceAnswer(serializers.Serializer):
    target = serializers.CharField(required=False)
    mac = serializers.CharField(required=False)
    # `Any`: the stubs see `Field.source` here; DRF takes declared fields off the class, so no clash at run time.
    source: Any = serializers.CharField(required=False)


class AddressSerializer(serializers.Serializer):
    ip = serializers.CharField()
    prefix = serializers.IntegerField()
    family = serializers.CharField()
    mac = serializers.CharField()
    sources = serializers.ListField(child=serializers.ChoiceField(choices=["lease", "agent", "arp"]))


class _DomainView(APIView):
    def domain(self, request: Request, pk: int) -> Domain:
        return visible_or_404(request, Domain.objects.select_related("host"), pk)

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")


class DisksView(_DomainView):
    @extend_schema(request=AttachDiskSerializer, responses={201: DeviceAnswer}, operation_id="domains_disks_attach")
    def post(self, request: Request, pk: int) -> Response:
        """Attach a volume as a disk, live if the domain runs and in its persistent definition."""
        data = AttachDiskSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        dev = devices.attach_volume(self.actor(), self.domain(request, pk), d["volume"], d["bus"], d["readonly"])
        return Response({"target": dev}, status=201)


class DiskView(_DomainView):
    @extend_schema(request=None, responses=DeviceAnswer, operation_id="domains_disks_detach")
    def delete(self, request: Request, pk: int, target: str) -> Response:
        return Response({"source": devices.detach_disk(self.actor(), self.domain(request, pk), target)})


class InterfacesView(_DomainView):
    @extend_schema(request=AttachInterfaceSerializer, responses={201: DeviceAnswer},
                   operation_id="domains_interfaces_attach")
    def post(self, request: Request, pk: int) -> Response:
        data = AttachInterfaceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        mac = devices.attach_interface(self.actor(), self.domain(request, pk), d["network"], d["model"], d["mac"])
        return Response({"mac": mac}, status=201)


class InterfaceView(_DomainView):
    @extend_schema(request=None, responses=DeviceAnswer, operation_id="domains_interfaces_detach")
    def delete(self, request: Request, pk: int, mac: str) -> Response:
        return Response({"source": devices.detach_interface(self.actor(), self.domain(request, pk), mac)})


class MediaView(_DomainView):
    @extend_schema(request=MediaSerializer, responses=DeviceAnswer, operation_id="domains_media_change")
    def post(self, request: Request, pk: int) -> Response:
        """Put an ISO volume into a CD-ROM (or eject it with an empty path)."""
        data = MediaSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        devices.change_media(self.actor(), self.domain(request, pk), d["target"], d["path"])
        return Response({"target": d["target"], "source": d["path"]})


class AddressesView(_DomainView):
    @extend_schema(responses=AddressSerializer(many=True), operation_id="domains_addresses")
    def get(self, request: Request, pk: int) -> Response:
        """The domain's IP addresses read now (DHCP leases, guest agent, ARP), each with its sources."""
        domain = self.domain(request, pk)
        policy.require(request.user, policy.VIEW, domain)
        return Response(refresh_addresses(self.actor(), domain))


urlpatterns = [
    path("domains/<int:pk>/disks/", DisksView.as_view(), name="domain-disks"),
    path("domains/<int:pk>/disks/<str:target>/", DiskView.as_view(), name="domain-disk"),
    path("domains/<int:pk>/interfaces/", InterfacesView.as_view(), name="domain-interfaces"),
    path("domains/<int:pk>/interfaces/<str:mac>/", InterfaceView.as_view(), name="domain-interface"),
    path("domains/<int:pk>/media/", MediaView.as_view(), name="domain-media"),
    path("domains/<int:pk>/addresses/", AddressesView.as_view(), name="domain-addresses"),
]
