"""Requesting a route as a role: real objects in its URL, and a body that changes nothing valid.

A request that may change something (POST, PUT, PATCH, DELETE) carries an empty body, so a role
that is allowed gets a validation answer (400, or the form again) wherever the route takes input.
Routes that take no input (start, remove, delete...) do act, on objects made for this test: for a
domain or a job, on a fresh one made for that very request, so every role meets the same object
in the same state.
"""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.security.conftest import World
from tests.security.routes import MUTATING, Route, outcome

# Which object a `pk` names, by the route's name; the first matching prefix wins.
PK_KINDS = [
    ("api:token-", "token"), ("tokens:", "token"),
    ("api:host-", "host"), ("hosts:", "host"),
    ("api:job-", "job"), ("jobs:", "job"),
    ("api:template-", "template"), ("catalog:", "template"),
    ("api:audit-", "audit"),
    ("api:network-", "network"), ("api:interface-", "interface"),
    ("api:pool-", "pool"), ("api:volume-", "volume"),
    ("api:domain-", "domain"), ("domains:", "domain"), ("consoles:", "domain"),
    ("migration:evacuate", "host"), ("migration:maintenance", "host"), ("migration:", "domain"),
]
# Which object an `oid` names in the HTML pages' routes.
OID_KINDS = [("networks:interface", "interface"), ("networks:", "network"), ("storage:volume_create", "pool"),
             ("storage:volume_upload", "pool"), ("storage:volume", "volume"), ("storage:", "pool")]
# Path arguments that name no object: a harmless real value for each.
VERBS = {"domains:action": "start", "networks:action": "start", "networks:interface_action": "start",
         "storage:pool_action": "refresh", "storage:volume_action": "resize"}
# The disk and interface every test domain has (tests.conftest.domain_xml): detaching them is real work.
FIXED = {"op": "media", "target": "hda", "mac": "52:54:00:00:00:01", "uidb64": "MQ", "token": "set-password",
         "app_label": "auth", "url": "no-such-page/", "content_type_id": "1"}


def _kind(route: Route, name: str) -> str:
    if name in ("host_pk",):
        return "host"
    if name in ("job_pk",):
        return "job"
    if name == "domain_pk":
        return "domain"
    table = OID_KINDS if name == "oid" else PK_KINDS
    for prefix, kind in table:
        if route.key.startswith(prefix):
            return kind
    raise LookupError(f"{route.key}: no rule says what its URL argument '{name}' names")


def _object(world: World, kind: str, fresh: bool) -> Any:
    if kind == "token":
        return world.new_token().pk
    if fresh and kind == "domain":
        return world.new_domain().pk
    if fresh and kind == "job":
        return world.new_job().pk
    value = getattr(world, kind)
    return getattr(value, "pk", value)


def url_values(route: Route, world: World, fresh: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in route.kwargs:
        if name == "verb":
            values[name] = VERBS[route.key]
        elif name in FIXED:
            values[name] = FIXED[name]
        elif route.key.startswith("admin:") or route.key.startswith("admin/"):
            # The Django admin's objects: the users and groups of this test (the user exists).
            values[name] = str(world.users["admin"].pk)
        else:
            values[name] = str(_object(world, _kind(route, name), fresh))
    return values


def send(client: Client, method: str, path: str) -> Any:
    """One request; bodies are empty JSON for the API and an empty form for pages."""
    if path.startswith("/api/"):
        # JSON first; the docs page renders only HTML, as it does for a browser.
        return client.generic(method, path, b"{}" if method in MUTATING else b"", content_type="application/json",
                              HTTP_ACCEPT="application/json, text/html;q=0.9")
    if method == "GET":
        return client.get(path)
    return client.generic(method, path, b"", content_type="application/x-www-form-urlencoded")


def ask(route: Route, method: str, role: str, world: World) -> str:
    """What `role` gets from `method` on `route`, as the matrix spells it."""
    fresh = method in MUTATING and role != "anonymous"
    path = route.path(url_values(route, world, fresh))
    return outcome(send(world.client(role), method, path))
