"""Every route the project serves, read from Django's URL resolver and the ASGI WebSocket routes,
and the machinery to request one as each role with real objects in its URL.

Nothing here knows which routes exist: a route added to any urls.py shows up in `http_routes()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.urls import URLPattern, URLResolver, get_resolver

SAFE = ("GET",)
MUTATING = ("PUT", "PATCH", "POST", "DELETE")  # in the order they are sent: a DELETE comes last
# Function views do not declare their methods; they are asked both (a GET-only view ignores a POST body).
FUNCTION_VIEW_METHODS = ("GET", "POST")
_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)|<(?:(?P<conv>\w+):)?(?P<name2>\w+)>")
_FORMAT = re.compile(r"\(\?P<format>|<drf_format_suffix:format>")
# What a refusal looks like on an HTML page that redirects and explains itself in a message.
_REFUSALS = ("not allowed", "only administrators", "only an administrator")


@dataclass(frozen=True)
class Route:
    key: str  # the route's name ("api:domain-detail"), or its pattern when it has none
    pattern: str  # the whole pattern, as the resolver spells it
    methods: tuple[str, ...]
    kwargs: tuple[str, ...]

    @property
    def format_suffix(self) -> bool:
        """DRF's `.json` twin of an API route: the same view, so the same rules (checked separately)."""
        return bool(_FORMAT.search(self.pattern))

    def path(self, values: dict[str, str]) -> str:
        """The pattern with each URL argument replaced by its value."""

        def value(match: re.Match) -> str:
            return str(values[match["name"] or match["name2"]])

        text = self.pattern.replace("^", "").replace("$", "")
        return "/" + _GROUP.sub(value, text)


def _methods(callback: Any) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)  # a DRF viewset's route: {"get": "list", ...}
    if actions:
        return tuple(m.upper() for m in actions)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None:
        declared = [m.upper() for m in view_class.http_method_names if m not in ("options", "head", "trace")
                    and hasattr(view_class, m)]
        return tuple(declared)
    return FUNCTION_VIEW_METHODS


def _walk(patterns: list[Any], prefix: str, namespace: str) -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            pattern = prefix + str(entry.pattern)
            key = f"{namespace}{entry.name}" if entry.name else pattern
            names = tuple(m["name"] or m["name2"] for m in _GROUP.finditer(pattern))
            yield Route(key=key, pattern=pattern, methods=_methods(entry.callback), kwargs=names)


def http_routes() -> list[Route]:
    """Every HTTP route of the project, in the resolver's order."""
    return list(_walk(get_resolver().url_patterns, "", ""))


def websocket_routes() -> list[str]:
    """Every WebSocket path pattern: the Channels URLRouter's and the console router's."""
    from webvirt.consoles.consumers import PATH
    from webvirt.events.routing import websocket_urlpatterns

    return [str(p.pattern) for p in websocket_urlpatterns] + [PATH.pattern]


def outcome(response: HttpResponse) -> str:
    """A response as the matrix spells it: the status, and for a redirect where it goes or why.

    "login": sent to a login page; "denied": a page (or a redirect) that says the action is refused.
    """
    status = response.status_code
    if status == 302 and response.get("Location", "").startswith(("/accounts/login/", "/admin/login/")):
        return "login"
    if status in (200, 302) and _refused_in_messages(response):
        return "denied"
    return str(status)


def _refused_in_messages(response: HttpResponse) -> bool:
    request = getattr(response, "wsgi_request", None)
    if request is None or not hasattr(request, "_messages"):
        return False
    texts = [str(m).lower() for m in get_messages(request)]
    return any(refusal in text for text in texts for refusal in _REFUSALS)
