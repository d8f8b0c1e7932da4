from __future__ import annotations

import base64
import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from oauth2_provider.views import TokenView as BaseTokenView

from tests.oidc.provider.people import TAMPERED_CLIENT


def flip_signature_byte(token: str) -> str:
    """The same JWT with the first byte of its signature changed: its header and claims still read fine."""
    header, claims, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return ".".join((header, claims, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()))


class TokenView(BaseTokenView):
    """The token endpoint; for the tampering client, the ID token's signature is damaged on the way out."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        if request.POST.get("client_id") == TAMPERED_CLIENT and response.status_code == 200:
            body = json.loads(response.content)
            body["id_token"] = flip_signature_byte(body["id_token"])
            response.content = json.dumps(body).encode()
        return response
