"""POST /api/v1/domains/<id>/console/ {"kind": "vnc" | "serial"}: a single-use console ticket."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webvirt.accounts.policy import Actor
from webvirt.consoles import services
from webvirt.domains.models import Domain
from webvirt.ui import visible_or_404


class ConsoleRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=services.KINDS, default="vnc")


class ConsoleTicketSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The WebSocket URL to open within the ticket's lifetime (once).")
    path = serializers.CharField(help_text="The same URL without scheme and host when it is on this origin.")
    expires_at = serializers.DateTimeField()


def request_binding(request: Request) -> str:
    """The session or API token the request authenticated with; the ticket is only good for that."""
    token = getattr(request.auth, "key", None)
    if token:
        return services.binding(token_key=token)
    return services.binding(session_key=request.session.session_key)


class ConsoleTicketView(APIView):
    @extend_schema(request=ConsoleRequestSerializer, responses=ConsoleTicketSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """A ticket for the domain's VNC or serial console: valid 30 s, for one WebSocket, for you only."""
        domain = visible_or_404(request, Domain.objects.select_related("host"), pk)
        data = ConsoleRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.issue(Actor.from_request(request, "api"), domain, data.validated_data["kind"],
                                request_binding(request))
        scheme = "wss" if request.is_secure() else "ws"
        path = issued.path
        if data.validated_data["kind"] == "vnc" and settings.WEBVIRT_CONSOLE_GATEWAY_URL:
            path = f"{settings.WEBVIRT_CONSOLE_GATEWAY_URL}?token={issued.ticket}"
        url = f"{scheme}://{request.get_host()}{path}" if path.startswith("/") else path
        return Response({"url": url, "path": path, "expires_at": issued.expires_at}, status=201)

