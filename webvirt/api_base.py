"""What the apps' APIs for objects that live only in libvirt share (networks, pools, volumes, host
interfaces): ids of the form `<host id>:<uuid or name>...`, how a request's actor is made, flags.

The policy is applied by each app's services, which resolve such an id; the viewsets stay thin.
"""

from __future__ import annotations

from rest_framework import parsers, viewsets

from webvirt.accounts.policy import Actor
from webvirt.domains.api import RawXMLParser

ID_REGEX = r"[0-9]+:[^/]+"


def truthy(value: object) -> bool:
    """A query flag's value: `?force=true`, `1`, `yes` or `on`."""
    return str(value).lower() in {"1", "true", "yes", "on"}


class LiveObjectViewSet(viewsets.ViewSet):
    lookup_value_regex = ID_REGEX
    parser_classes = [parsers.JSONParser, RawXMLParser, parsers.FormParser, parsers.MultiPartParser]

    def actor(self) -> Actor:
        return Actor.from_request(self.request, "api")
