"""REST API: install a new machine from an ISO, and upload an ISO into a pool. Both answer a job."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import JOB_ACCEPTED, job_accepted
from webvirt.hosts.models import Host
from webvirt.install import services
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.install import BOOT_DEVICES, GRAPHICS


class InstallSerializer(serializers.Serializer):
    host = serializers.IntegerField()
    name = serializers.CharField(max_length=63)
    vcpus = serializers.IntegerField(default=1)
    memory_mib = serializers.IntegerField(default=1024)
    disk_gib = serializers.FloatField(default=10)
    pool = serializers.CharField(max_length=100)
    iso = serializers.CharField(required=False, allow_blank=True, default="", help_text="A volume path in a pool.")
    network = serializers.CharField(required=False, allow_blank=True, default="")
    graphics = serializers.ChoiceField(choices=GRAPHICS, default="vnc")
    boot = serializers.ListField(child=serializers.ChoiceField(choices=BOOT_DEVICES), default=["cdrom", "hd"])
    domain_type = serializers.ChoiceField(choices=["", "kvm", "qemu"], default="",
                                          help_text="Empty: kvm where the host offers it, else qemu.")


class UploadSerializer(serializers.Serializer):
    host = serializers.IntegerField()
    pool = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=63, required=False, allow_blank=True, default="",
                                 help_text="The volume's name; the file's name when empty.")
    file = serializers.FileField()


def visible_host(request: Request, pk: int) -> Host:
    host = policy.visible(request.user, Host.objects.all()).filter(pk=pk).first()
    if host is None:
        raise VirtError("There is no such host.", errors.NOT_FOUND)
    return host


class InstallView(APIView):
    """Install a new machine: create its disk, define it with the ISO as a CD-ROM, start it (a job)."""

    @extend_schema(request=InstallSerializer, responses=JOB_ACCEPTED)
    def post(self, request: Request) -> Response:
        data = InstallSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        host = visible_host(request, v.pop("host"))
        job = services.start_install(Actor.from_request(request, "api"), host, services.InstallRequest(**v))
        return job_accepted(job)


class UploadView(APIView):
    """Upload a file (an ISO) into a pool: the web process keeps it, a job streams it through libvirt."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses=JOB_ACCEPTED)
    def post(self, request: Request) -> Response:
        data = UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        host = visible_host(request, v["host"])
        job = services.start_upload(Actor.from_request(request, "api"), host, v["pool"], v["name"], v["file"])
        return job_accepted(job)


urlpatterns = [
    path("install/", InstallView.as_view(), name="install"),
    path("uploads/", UploadView.as_view(), name="upload"),
]
