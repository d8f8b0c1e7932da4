"""The authorization matrix: who gets what from every route the project serves.

The routes come from Django's URL resolver and the ASGI WebSocket routes, never from a list kept by
hand, so a new route without an entry here fails `test_route` with "new route X has no entry in the
authorization matrix". Each entry gives, per HTTP method, the outcome for the five roles in the
order of ROLES: anonymous, stranger, grantee, owner, admin.

Outcomes: a status ("200", "404"...), "login" (a redirect to a login page), "denied" (a redirect
back with a refusal message: how HTML pages refuse an action on an object the user may see).
The project's rules, as the families below spell them:
- objects a user may not see answer 404, never 403 (their existence does not leak);
- anonymous pages redirect to the login page, anonymous API requests answer 401;
- an allowed request that changes something carries an empty body and answers 400 (the API) or
  the form again (a page), so nothing is made; routes that take no input act on this test's objects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import libvirt
import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import TEST_URI
from tests.security import asking
from tests.security.asking import ask, url_values
from tests.security.conftest import ROLES, World
from tests.security.routes import MUTATING, Route, http_routes, outcome, websocket_routes

pytestmark = pytest.mark.django_db

# What the snapshot routes' URL arguments name, added to asking.py's tables from here: their `pk` is a
# domain (the owner's, a fresh one for a change), their `name` a snapshot that domain does not have.
asking.PK_KINDS.append(("snapshots:", "domain"))
asking.FIXED.setdefault("name", "mx-snapshot")
# A wave route's `pk` is the world's scheduled wave, made for each test by _a_wave.
asking.PK_KINDS[:0] = [("api:wave-", "wave"), ("waves:", "wave")]
# An SSH key route's `pk` is one of the owner's keys, made for each test by _an_ssh_key.
asking.PK_KINDS[:0] = [("api:ssh-key-", "ssh_key"), ("me:", "ssh_key")]
# A People route's `pk` is a user of its own (with an API token: `token_pk`) or their group, made by _a_person.
asking.PK_KINDS[:0] = [("people:group", "group"), ("api:group-", "group"), ("people:", "person"),
                       ("api:user-", "person")]


@pytest.fixture(autouse=True)
def _a_person(request: pytest.FixtureRequest) -> None:
    """A user (not an administrator) in a group, with an API token: what the People routes act on."""
    route = getattr(request.node, "callspec", None) and request.node.callspec.params.get("route")
    if route is None or not route.key.startswith(("people:", "api:user-", "api:group-")):
        return
    from django.contrib.auth.models import Group

    from tests.people import make_user
    from webvirt.accounts.tokens import create_token

    world = request.getfixturevalue("world")
    world.person = make_user("mx-person", group="mx-group")  # type: ignore[attr-defined]
    world.group = Group.objects.get(name="mx-group")  # type: ignore[attr-defined]
    asking.FIXED["token_pk"] = str(create_token(world.person, name="mx")[0].pk)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _an_ssh_key(request: pytest.FixtureRequest) -> None:
    """An SSH key of the world's owner (the World has none of its own)."""
    route = getattr(request.node, "callspec", None) and request.node.callspec.params.get("route")
    if route is None or not route.key.startswith(("api:ssh-key-", "me:")):
        return
    from tests.unit.test_ssh_keys import public_key_line
    from webvirt.accounts import sshkeys
    from webvirt.accounts.policy import Actor

    world = request.getfixturevalue("world")
    owner = world.users["owner"]
    world.ssh_key = sshkeys.add_key(Actor(user=owner), owner, public_key_line(comment="mx"))  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _a_wave(request: pytest.FixtureRequest) -> None:
    """A wave of the world's template for its owner, scheduled for tomorrow (the World has no wave of its own)."""
    route = getattr(request.node, "callspec", None) and request.node.callspec.params.get("route")
    if route is None or not route.key.startswith(("api:wave-", "waves:")):
        return
    from datetime import timedelta

    from django.utils import timezone

    from webvirt.waves.models import Wave

    world = request.getfixturevalue("world")
    start = timezone.now() + timedelta(days=1)
    wave = Wave.objects.create(name="mx-wave", template=world.template, start_at=start,
                               end_at=start + timedelta(hours=1), name_pattern="mx-wave-{n}", planned=1,
                               created_by=world.users["admin"])
    wave.users.add(world.users["owner"])
    world.wave = wave  # type: ignore[attr-defined]

# Families ------------------------------------------------------------------------------------------
#                     anonymous stranger grantee owner admin
ADMIN_API = "401 404 404 404 200"  # hosts, networks, storage, audit: administrators only
ADMIN_API_INPUT = "401 404 404 404 400"  # ... a change with an empty body: refused, or invalid for the admin
ADMIN_PAGE = "login 404 404 404 200"
MULTIPART_INPUT = "401 404 404 404 415"  # an upload route asked with an empty JSON body
ADMIN_PAGE_ACTS = "login 404 404 404 302"  # an admin's page action that redirects when done
NOT_POST = "login 405 405 405 405"  # a POST-only page asked with GET
OWNER_API = "401 404 404 200 200"  # the owner's domain (or job): visible to the owner and admins
OWNER_PAGE = "login 404 404 200 200"
OWNER_PAGE_ACTS = "login 404 404 302 302"
GRANTEE_API = "401 404 200 404 200"  # a template granted to the grantee (not to the owner of its clone)
EVERYONE_API = "401 200 200 200 200"  # lists filtered to what each may see, one's own tokens, quotas
EVERYONE_PAGE = "login 200 200 200 200"
DJANGO_ADMIN = "login login login login 200"  # Django's admin site: staff only, others to its login
PUBLIC = "200 200 200 200 200"

MATRIX: dict[str, dict[str, str]] = {
    # The site and Django's accounts pages.
    "": {m: "login 302 302 302 302" for m in ("GET", "PUT", "PATCH", "POST", "DELETE")},  # / -> domain list
    "favicon.ico": {m: "301 301 301 301 301" for m in ("GET", "PUT", "PATCH", "POST", "DELETE")},
    "accounts/login/": {"GET": PUBLIC, "PUT": PUBLIC, "POST": PUBLIC},  # an empty POST shows the form again
    "logout": {"POST": "login login login login login"},
    # Password reset needs a login too (LoginRequiredMiddleware): there is no e-mail set-up to reset by.
    **{name: {"GET": EVERYONE_PAGE, "PUT": EVERYONE_PAGE, "POST": EVERYONE_PAGE}
       for name in ("password_change", "password_reset", "password_reset_confirm")},
    **{name: {"GET": EVERYONE_PAGE} for name in ("password_change_done", "password_reset_done",
                                                "password_reset_complete")},
    # Django's admin site.
    **{name: {"GET": DJANGO_ADMIN, "POST": DJANGO_ADMIN} for name in (
        "admin:index", "admin:password_change", "admin:auth_group_changelist", "admin:auth_group_add",
        "admin:auth_user_password_change", "admin:auth_user_changelist", "admin:auth_user_add",
        "admin:auth_user_history", "admin:auth_user_delete", "admin:auth_user_change", "admin:app_list")},
    "admin:login": {"GET": "login 200 200 200 302", "POST": "login 200 200 200 200"},
    "admin:logout": {"GET": "login 302 302 302 405", "POST": "login 302 302 302 login"},
    "admin:password_change_done": {"GET": DJANGO_ADMIN, "POST": "login login login login 405"},
    "admin:autocomplete": {"GET": "login login login login 403", "POST": "login login login login 405"},
    "admin:jsi18n": {"GET": DJANGO_ADMIN, "POST": "login login login login 405"},
    # The URL names the admin user as a group that does not exist: the admin is sent back to the index.
    **{name: {"GET": "login login login login 302", "POST": "login login login login 302"} for name in (
        "admin:auth_group_history", "admin:auth_group_delete", "admin:auth_group_change")},
    **{pattern: {m: "login login login login 302" for m in ("GET", "PUT", "PATCH", "POST", "DELETE")}
       for pattern in ("admin/auth/group/<path:object_id>/", "admin/auth/user/<path:object_id>/")},
    **{name: {"GET": "login login login login 404", "POST": "login login login login 404"}
       for name in ("admin:view_on_site", "admin/(?P<url>.*)$")},
    # The API's root, schema and docs: any account (the docs page is a page: anonymous to the login).
    "api:api-root": {"GET": EVERYONE_API},
    "api:schema": {"GET": EVERYONE_API},
    "api:docs": {"GET": EVERYONE_PAGE},
    # API tokens: everyone manages their own; another's token is not found, an administrator's too.
    "api:token-list": {"GET": EVERYONE_API, "POST": "401 201 201 201 201"},
    "api:token-detail": {"GET": "401 404 404 200 404", "DELETE": "401 404 404 204 404"},
    "tokens:list": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},
    "tokens:revoke": {"GET": NOT_POST, "POST": "login 404 404 302 404"},
    # SSH keys (the profile page): everyone manages their own; another's key is not found, an administrator's too.
    "api:ssh-key-list": {"GET": EVERYONE_API, "POST": "401 400 400 400 400"},  # an empty body: no key
    "api:ssh-key-detail": {"GET": "401 404 404 200 404", "DELETE": "401 404 404 204 404"},
    "me:profile": {"GET": EVERYONE_PAGE, "POST": "login 400 400 400 400"},  # an empty form: shown again, 400
    "me:ssh_key_delete": {"GET": NOT_POST, "POST": "login 404 404 302 404"},
    # Hosts.
    "api:host-list": {"GET": EVERYONE_API, "POST": "401 403 403 403 400"},  # adding is no object: 403
    # A host with a template on it cannot be forgotten: 409 (was a 500, see test_regressions).
    "api:host-detail": {"GET": ADMIN_API, "PUT": ADMIN_API_INPUT, "PATCH": ADMIN_API,
                        "DELETE": "401 404 404 404 409"},
    "hosts:list": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},  # the list filtered: empty for non-staff
    # Only those the policy lets add hosts get the form; to everyone else it does not exist.
    "hosts:add": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE} for name in ("hosts:detail", "hosts:summary", "hosts:edit")},
    "hosts:delete": {"GET": ADMIN_PAGE, "POST": "login 404 404 404 302"},
    # Domains: the owner's, seen and operated by the owner; XML editing and devices are for admins.
    "api:domain-list": {"GET": EVERYONE_API, "POST": "401 404 404 404 400"},
    "api:domain-detail": {"GET": OWNER_API, "DELETE": "401 404 404 403 200"},  # owners delete with remove
    "api:domain-xml": {"GET": OWNER_API, "PUT": "401 404 404 403 400"},
    "api:domain-autostart": {"POST": "401 404 404 403 400"},
    "api:domain-expiry": {"POST": "401 404 404 400 400"},
    "api:domain-start": {"POST": OWNER_API},
    **{f"api:domain-{verb}": {"POST": "401 404 404 409 409"}  # a shut-off domain refuses these (state)
       for verb in ("destroy", "reboot", "reset", "resume", "shutdown", "suspend")},
    "api:domain-remove": {"POST": OWNER_API},
    "api:domain-bulk": {"POST": "401 400 400 400 400"},  # each domain is checked by the job; an empty body: 400
    "api:domain-console": {"POST": "401 404 404 409 409"},  # a shut-off domain has no console to open
    "api:domain-addresses": {"GET": OWNER_API},
    "api:domain-disks": {"POST": "401 404 404 403 400"},
    "api:domain-disk": {"DELETE": "401 404 404 403 400"},  # the test driver cannot detach
    "api:domain-interfaces": {"POST": "401 404 404 403 400"},
    "api:domain-interface": {"DELETE": "401 404 404 403 400"},
    "api:domain-media": {"POST": "401 404 404 403 400"},
    "domains:list": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},
    "domains:define": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},  # non-staff are offered no host
    **{name: {"GET": OWNER_PAGE, "POST": OWNER_PAGE} for name in (
        "domains:detail", "domains:summary", "domains:xml_download", "domains:devices")},
    "domains:xml": {"GET": "login 404 404 403 200", "POST": "login 404 404 403 200"},
    # An empty form means "keep the disks", which only an administrator may do.
    "domains:undefine": {"GET": OWNER_PAGE, "POST": "login 404 404 denied 302"},
    "domains:remove": {"GET": OWNER_PAGE, "POST": OWNER_PAGE_ACTS},
    "domains:extend": {"GET": NOT_POST, "POST": OWNER_PAGE_ACTS},
    "domains:device_change": {"GET": NOT_POST, "POST": "login 404 404 denied 302"},
    "domains:action": {"GET": NOT_POST, "POST": OWNER_PAGE_ACTS},
    "domains:bulk": {"GET": NOT_POST, "POST": "login 302 302 302 302"},  # an empty form: back to the list, saying so
    # Snapshots: the owner's domain, snapshotted by the owner; it is a shut-off domain with a raw disk and
    # no snapshot, and not a linked clone.
    # An empty body asks for a snapshot named after the time, of the kind webvirt picks: the job is queued.
    "api:domain-snapshots": {"GET": OWNER_API, "POST": "401 404 404 202 202"},
    "api:domain-metrics": {"GET": OWNER_API},  # an owner sees their own domain's graphs
    "api:host-metrics": {"GET": ADMIN_API},
    # Prometheus: an administrator (token, session) or an allowed address; everyone else 401, not a login page.
    "metrics": {"GET": "401 401 401 401 200", "POST": "405 405 405 405 405"},
    # The snapshot named in the URL does not exist: not found, once the policy has let the owner through.
    "api:domain-snapshot": {"DELETE": "401 404 404 404 404"},
    "api:domain-snapshot-revert": {"POST": "401 404 404 404 404"},
    "api:domain-reset-to-template": {"POST": "401 404 404 409 409"},  # not a linked clone
    "snapshots:panel": {"GET": OWNER_PAGE, "POST": OWNER_PAGE},
    "snapshots:take": {"GET": NOT_POST, "POST": OWNER_PAGE_ACTS},  # an empty form: back to the tab, saying why
    # No such snapshot: the confirmation pages send back to the tab, saying so.
    **{name: {"GET": OWNER_PAGE_ACTS, "POST": OWNER_PAGE_ACTS} for name in ("snapshots:revert", "snapshots:delete")},
    # Not a linked clone: back to the tab with the reason, before any confirmation is asked.
    "snapshots:reset": {"GET": OWNER_PAGE_ACTS, "POST": OWNER_PAGE_ACTS},
    "consoles:vnc": {"GET": OWNER_PAGE, "POST": OWNER_PAGE},
    "consoles:serial": {"GET": OWNER_PAGE, "POST": OWNER_PAGE},
    "consoles:screenshot": {"GET": "login 404 404 409 409", "POST": "login 404 404 409 409"},
    # Install and upload (administrators).
    "api:install": {"POST": ADMIN_API_INPUT},
    "api:upload": {"POST": MULTIPART_INPUT},
    "install:new": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "install:upload": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    # Jobs: one's own.
    "api:job-list": {"GET": EVERYONE_API},
    "api:job-detail": {"GET": OWNER_API},
    "api:job-cancel": {"POST": "401 404 404 409 409"},  # a finished job cannot be cancelled
    "api:job-retry": {"POST": "401 404 404 400 400"},  # ... and this kind cannot be retried
    "jobs:list": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},
    "jobs:detail": {"GET": OWNER_PAGE, "POST": OWNER_PAGE},
    "jobs:cancel": {"GET": NOT_POST, "POST": OWNER_PAGE_ACTS},
    "jobs:retry": {"GET": NOT_POST, "POST": OWNER_PAGE_ACTS},
    # The audit trail.
    "api:audit-list": {"GET": ADMIN_API},
    "api:audit-detail": {"GET": ADMIN_API},
    "accounts:audit": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    # Templates: granted ones are seen and cloned; making, editing and deleting them is for admins.
    "api:template-list": {"GET": EVERYONE_API, "POST": "401 404 404 403 400"},  # the owner sees the domain
    "api:template-quota": {"GET": EVERYONE_API},
    "api:template-detail": {"GET": GRANTEE_API, "PATCH": ADMIN_API, "DELETE": "401 404 403 404 204"},
    "api:template-clone": {"POST": "401 404 400 404 400"},
    "api:template-warm": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},  # a template's warm pool: administrators
    "catalog:list": {"GET": EVERYONE_PAGE, "POST": EVERYONE_PAGE},
    "catalog:detail": {"GET": "login 404 200 404 200", "POST": "login 404 200 404 200"},
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE} for name in (
        "catalog:register", "catalog:quotas", "catalog:make", "catalog:edit")},
    "catalog:delete": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},
    # Networks and host interfaces (administrators).
    "api:host-networks": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:host-interfaces": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:network-detail": {"GET": ADMIN_API, "DELETE": ADMIN_API},
    "api:network-autostart": {"POST": ADMIN_API_INPUT},
    # No `mac` to remove: not found, for the admin too (the refusals come first, from the policy).
    "api:network-dhcp-hosts": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT, "DELETE": "401 404 404 404 404"},
    "api:network-leases": {"GET": ADMIN_API},
    "api:network-start": {"POST": ADMIN_API},
    "api:network-stop": {"POST": "401 404 404 404 409"},  # it is not running
    "api:network-xml": {"GET": ADMIN_API, "PUT": ADMIN_API_INPUT},
    "api:interface-detail": {"GET": ADMIN_API, "DELETE": "401 404 404 404 204"},
    "api:interface-start": {"POST": ADMIN_API},
    "api:interface-stop": {"POST": "401 404 404 404 409"},
    "api:interface-xml": {"GET": ADMIN_API, "PUT": ADMIN_API_INPUT},
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE} for name in (
        "networks:list", "networks:create", "networks:interfaces", "networks:interface", "networks:detail",
        "networks:xml", "networks:xml_download")},
    "networks:delete": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},
    **{name: {"GET": NOT_POST, "POST": ADMIN_PAGE_ACTS} for name in (
        "networks:interface_action", "networks:dhcp_add", "networks:dhcp_remove", "networks:action")},
    # Storage (administrators).
    "api:host-pools": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:pool-detail": {"GET": ADMIN_API, "DELETE": ADMIN_API},
    "api:pool-autostart": {"POST": ADMIN_API_INPUT},
    "api:pool-refresh": {"POST": ADMIN_API},
    "api:pool-start": {"POST": "401 404 404 404 409"},  # it is running
    "api:pool-stop": {"POST": ADMIN_API},
    "api:pool-upload": {"POST": MULTIPART_INPUT},
    "api:pool-volumes": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:pool-xml": {"GET": ADMIN_API, "PUT": ADMIN_API_INPUT},
    "api:volume-detail": {"GET": ADMIN_API, "DELETE": ADMIN_API},
    "api:volume-clone": {"POST": ADMIN_API_INPUT},
    "api:volume-download": {"POST": "401 404 404 404 202"},
    "api:volume-resize": {"POST": ADMIN_API_INPUT},
    "api:volume-xml": {"GET": ADMIN_API},
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE} for name in (
        "storage:list", "storage:create", "storage:volume", "storage:volume_xml_download", "storage:pool",
        "storage:pool_xml", "storage:pool_xml_download")},
    "storage:pool_delete": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},
    # The owner's job has no file: the admin is sent back to the job with the reason.
    "storage:download_file": {"GET": ADMIN_PAGE_ACTS, "POST": ADMIN_PAGE_ACTS},
    **{name: {"GET": NOT_POST, "POST": ADMIN_PAGE_ACTS} for name in (
        "storage:volume_action", "storage:volume_create", "storage:volume_upload", "storage:pool_action")},
    # Migration and maintenance (administrators; a domain's owner hears 404 too). The world has one host:
    # an empty request names no destination, so the admin gets 400 or the form again and nothing moves.
    "api:domain-migrate-check": {"GET": ADMIN_API_INPUT},  # no `host` in the query
    "api:domain-migrate": {"POST": ADMIN_API_INPUT},
    "api:host-evacuate": {"POST": "401 404 404 404 202"},  # takes no input: the host goes into maintenance
    "api:host-maintenance": {"POST": ADMIN_API_INPUT},  # no `enabled`
    "migration:migrate": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},  # an empty form: shown again, with its errors
    # The pre-flight partial reads the query only: with none, it lists what is missing (200).
    "migration:check": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "migration:evacuate": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},  # confirmed: to the evacuation job
    "migration:maintenance": {"GET": NOT_POST, "POST": ADMIN_PAGE_ACTS},  # no `enabled`: maintenance ends
    # Clone waves (administrators only). Their `pk` is the world's scheduled wave (_a_wave below): an empty
    # PATCH checks it again and keeps it, DELETE cancels it, and it cannot be ended before its start.
    "api:wave-list": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:wave-detail": {"GET": ADMIN_API, "PATCH": ADMIN_API, "DELETE": ADMIN_API},
    "api:wave-end": {"POST": "401 404 404 404 409"},
    "waves:list": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},  # an empty form: shown again, with its errors
    "waves:cancel": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},  # a confirmation page, then cancelled
    "waves:end": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS},  # not running: said among the messages
    # OpenID Connect: its settings page is for administrators; the sign-in's two steps are open to everyone and,
    # while it is not set up (as here), send back to the login page saying so.
    "oidc:settings": {"GET": ADMIN_PAGE, "POST": "login 404 404 404 400"},  # an empty form: shown again, 400
    **{name: {"GET": "login login login login login"} for name in ("oidc_signin:start", "oidc_signin:callback")},
    # LDAP sign-in settings (administrators only): an empty form is shown again (400), its test button takes a POST.
    "directory:settings": {"GET": ADMIN_PAGE, "POST": "login 404 404 404 400"},
    "directory:test": {"GET": NOT_POST, "POST": "login 404 404 404 400"},
    # People (administrators only): the world's own user and group (_a_person). An empty form is shown again;
    # the confirmation pages act.
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE} for name in (
        "people:list", "people:create", "people:import", "people:detail", "people:edit", "people:password",
        "people:group_create", "people:group")},
    **{name: {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE_ACTS} for name in (
        "people:deactivate", "people:reactivate", "people:token_revoke", "people:group_delete")},
    "people:group_remove": {"GET": NOT_POST, "POST": ADMIN_PAGE_ACTS},  # nobody named: back to the group, saying so
    "api:user-list": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:user-detail": {"GET": ADMIN_API, "PATCH": ADMIN_API},  # an empty PATCH changes nothing
    "api:user-import": {"POST": ADMIN_API_INPUT},  # no CSV
    "api:group-list": {"GET": ADMIN_API, "POST": ADMIN_API_INPUT},
    "api:group-detail": {"GET": ADMIN_API, "PATCH": ADMIN_API, "DELETE": "401 404 404 404 204"},
}

# Bodies ----------------------------------------------------------------------------------------------
# A refused role sends a valid request, so that the policy, not validation, is what refuses it.
# (Allowed roles send an empty body: see the module's docstring.)


def _file() -> SimpleUploadedFile:
    return SimpleUploadedFile("mx.iso", b"not really an ISO", content_type="application/octet-stream")


def _pool_name(world: World) -> str:
    from webvirt.storage import services

    return services.get_pool(_admin_actor(world), world.pool)[1].name


def _admin_actor(world: World) -> Any:
    from webvirt.accounts.policy import Actor

    return Actor(user=world.users["admin"])


XML = {"xml": "<network><name>mx</name></network>"}
VALID_BODIES: dict[str, Any] = {
    "api:host-list": lambda w: {"name": "mx-host", "uri": TEST_URI},
    "api:host-detail": lambda w: {"name": "mx-host", "uri": TEST_URI},
    "api:domain-list": lambda w: {"host": w.host.pk, "xml": "<domain type='test'><name>mx</name></domain>"},
    "api:domain-xml": lambda w: {"xml": "<domain type='test'><name>mx</name></domain>"},
    "api:domain-autostart": lambda w: {"enabled": True},
    "api:domain-expiry": lambda w: {"expires_at": None},
    "api:domain-disks": lambda w: {"volume": "/mx/volume.img"},
    "api:domain-interfaces": lambda w: {"network": "default"},
    "api:domain-media": lambda w: {"target": "hdc", "path": ""},
    "api:domain-snapshots": lambda w: {"name": "mx-snap"},
    "api:install": lambda w: {"host": w.host.pk, "name": "mx-install", "pool": _pool_name(w), "disk_gib": 0.01},
    "api:upload": lambda w: {"host": w.host.pk, "pool": _pool_name(w), "file": _file()},
    "api:host-networks": lambda w: {"name": "mx-net", "ipv4": "10.215.0.1/24"},
    "api:host-interfaces": lambda w: {"name": "mxbr9"},
    "api:network-autostart": lambda w: {"enabled": True},
    "api:network-dhcp-hosts": lambda w: {"mac": "52:54:00:00:00:99", "ip": "10.214.0.99"},
    "api:network-xml": lambda w: XML,
    "api:interface-xml": lambda w: XML,
    "api:host-pools": lambda w: {"name": "mx-pool", "type": "dir", "target_path": "/mx/pool"},
    "api:pool-autostart": lambda w: {"enabled": True},
    "api:pool-upload": lambda w: {"file": _file()},
    "api:pool-volumes": lambda w: {"name": "mx-new", "capacity_mib": 1},
    "api:pool-xml": lambda w: XML,
    "api:volume-clone": lambda w: {"name": "mx-copy"},
    "api:volume-resize": lambda w: {"capacity_mib": 2},
    "api:template-list": lambda w: {"domain": w.domain.pk, "name": "mx-template"},
    "api:template-clone": lambda w: {"count": 1, "name_pattern": "mx-{n}"},
    "hosts:add": lambda w: {"name": "mx-host", "uri": TEST_URI},
    "hosts:edit": lambda w: {"name": "mx-host", "uri": TEST_URI},
    "snapshots:take": lambda w: {"name": "mx-snap", "kind": "auto"},
    "networks:dhcp_add": lambda w: {"mac": "52:54:00:00:00:99", "ip": "10.214.0.99"},
    "storage:volume_action": lambda w: {"capacity_mib": "2"},
    "storage:volume_create": lambda w: {"name": "mx-new", "format": "raw", "capacity_mib": "1"},
    "storage:volume_upload": lambda w: {"file": _file()},
    "api:domain-migrate": lambda w: {"host": w.host.pk, "storage": "shared"},
    "api:host-maintenance": lambda w: {"enabled": True},
    "migration:migrate": lambda w: {"host": w.host.pk, "storage": "shared", "max_downtime_ms": "300"},
    "migration:maintenance": lambda w: {"enabled": "1"},
    "api:wave-list": lambda w: {"template": w.template.pk, "users": ["olivia"], "name_pattern": "mx-w{n}",
                                "start_at": "2099-01-01T08:00:00Z", "end_at": "2099-01-01T12:00:00Z"},
    "api:user-list": lambda w: {"username": "mx-person-new", "is_admin": True},
    "api:user-detail": lambda w: {"first_name": "mx-changed", "is_admin": True},
    "api:user-import": lambda w: {"csv": "username\nmx-person-new\n"},
    "api:group-list": lambda w: {"name": "mx-group-new"},
    "api:group-detail": lambda w: {"name": "mx-group-renamed", "members": []},
    "people:create": lambda w: {"username": "mx-person-new", "is_admin": "on"},
    "people:import": lambda w: {"text": "username\nmx-person-new\n"},
    "people:edit": lambda w: {"first_name": "mx-changed", "is_admin": "on", "is_active": "on"},
    "people:group_create": lambda w: {"name": "mx-group-new"},
    "people:group": lambda w: {"do": "rename", "rename-name": "mx-group-renamed"},
    "people:group_remove": lambda w: {"user": w.person.pk},
    # Nothing listens on 127.0.0.1:9: a test that got through would be refused there, and saving would show.
    "directory:settings": lambda w: {"enabled": "on", "server_uri": "ldap://127.0.0.1:9", "timeout": "1",
                                     "user_search_base": "ou=mx,dc=test", "user_filter": "(uid=%(user)s)",
                                     "group_type": "groupOfNames"},
    "directory:test": lambda w: {"server_uri": "ldap://127.0.0.1:9", "timeout": "1",
                                 "user_search_base": "ou=mx,dc=test", "user_filter": "(uid=%(user)s)",
                                 "group_type": "groupOfNames"},
}
MULTIPART = {"api:upload", "api:pool-upload", "storage:volume_upload"}


def _refused(expected: str) -> bool:
    return expected in ("401", "403", "404", "405", "login", "denied")


def request_as(route: Route, method: str, role: str, world: World, expected: str) -> str:
    """Ask the route; a refused role's change carries a valid body where the route takes one."""
    body_of = VALID_BODIES.get(route.key)
    if body_of is None or method not in MUTATING or not _refused(expected) or role == "anonymous":
        return ask(route, method, role, world)
    path = route.path(url_values(route, world, fresh=True))
    client, body = world.client(role), body_of(world)
    if route.key in MULTIPART:
        return outcome(client.post(path, body))
    if path.startswith("/api/"):
        return outcome(client.generic(method, path, _json(body), content_type="application/json",
                                      HTTP_ACCEPT="application/json"))
    return outcome(client.post(path, body))


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)


# The tests ---------------------------------------------------------------------------------------------

def _matrix_key(route: Route) -> str:
    return route.key if route.key in MATRIX else route.pattern


ROUTES = [r for r in http_routes() if not r.format_suffix]
ORDER = ("GET", "PUT", "PATCH", "POST", "DELETE")


@pytest.mark.parametrize("route", [pytest.param(r, id=r.pattern) for r in ROUTES])
def test_route(route: Route, world: World) -> None:
    entry = MATRIX.get(_matrix_key(route))
    assert entry is not None, (f"new route {route.key} ({route.pattern}) has no entry in the authorization matrix "
                               f"(tests/security/test_matrix.py)")
    assert set(entry) == set(route.methods), (
        f"{route.key}: the matrix gives {sorted(entry)}, the route answers {sorted(route.methods)}")
    got: dict[str, str] = {}
    for method in sorted(entry, key=ORDER.index):
        expected = dict(zip(ROLES, entry[method].split(), strict=True))
        got[method] = " ".join(request_as(route, method, role, world, expected[role]) for role in ROLES)
    assert got == entry, f"{route.key}: expected {entry}, got {got} (roles: {' '.join(ROLES)})"
    assert_nothing_made(world)


def assert_nothing_made(world: World) -> None:
    """The refused requests carried valid bodies: none of what they asked for may exist now."""
    from webvirt.catalog.models import Template
    from webvirt.hosts.models import Host
    from webvirt.jobs.models import Job
    from webvirt.waves.models import Wave

    assert not Host.objects.filter(name="mx-host").exists()
    assert not Template.objects.filter(name="mx-template").exists()
    assert not Job.objects.filter(kind="snapshot_create", params__name="mx-snap").exists()
    assert not Wave.objects.filter(name_pattern="mx-w{n}").exists()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    assert not get_user_model().objects.filter(username="mx-person-new").exists()
    assert not get_user_model().objects.filter(first_name="mx-changed").exists()
    assert not Group.objects.filter(name__in=["mx-group-new", "mx-group-renamed"]).exists()
    from webvirt.directory.models import LdapSettings

    assert not LdapSettings.objects.exists()
    driver = libvirt.open(TEST_URI)  # a connection of its own: the names are read from the driver itself
    try:
        names = {d.name() for d in driver.listAllDomains(0)} | {n.name() for n in driver.listAllNetworks(0)}
        names |= {p.name() for p in driver.listAllStoragePools(0)} | {i.name() for i in driver.listAllInterfaces(0)}
        for pool in driver.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                names |= {v.name() for v in pool.listAllVolumes(0)}
            except libvirt.libvirtError:
                continue  # removed since the listing (another test's transient pool): nothing of ours in it
        made = names & {"mx", "mx-install", "mx-net", "mx-pool", "mxbr9", "mx-new", "mx-copy", "mx.iso"}
        assert not made, f"a refused request made {sorted(made)}"
    finally:
        driver.close()


def test_every_route_in_the_matrix_still_exists() -> None:
    """An entry for a route that is gone would hide a renamed route behind a stale rule."""
    keys = {r.key for r in ROUTES} | {r.pattern for r in ROUTES}
    assert sorted(set(MATRIX) - keys) == []


# WebSockets --------------------------------------------------------------------------------------------

WS_MATRIX = {
    "ws/events/": "the owner connects, anonymous is refused",
    r"^/ws/console/(?P<kind>vnc|serial)/(?P<id>\d+)/$": "anonymous and a stranger are refused the owner's console",
}


def test_every_websocket_route_is_in_the_matrix() -> None:
    for pattern in websocket_routes():
        assert pattern in WS_MATRIX, f"new route {pattern} has no entry in the authorization matrix (WS_MATRIX)"


def _socket(path: str, session_key: str | None) -> tuple[bool, int | None]:
    """Open a WebSocket on the project's ASGI app as a browser of this site; (accepted, close code)."""
    from webvirt.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))

    scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"", "scheme": "ws",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "subprotocols": []}

    async def run() -> tuple[bool, int | None]:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "websocket.connect"})
        answer = await communicator.receive_output(5)
        if answer["type"] == "websocket.accept":
            await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
            await communicator.wait(5)
            return True, None
        return False, answer.get("code")

    # Not asyncio.run: its final cancellation of leftover tasks (the channel layer's Redis reads) can
    # wait forever; a private loop is closed with whatever is left, and the exchange itself is bounded.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(run(), 20))
    finally:
        loop.close()


def _session(world: World, role: str) -> str | None:
    if role == "anonymous":
        return None
    return world.client(role).cookies["sessionid"].value


@pytest.mark.django_db(transaction=True)
def test_websockets(world: World) -> None:
    assert _socket("/ws/events/", None)[0] is False
    assert _socket("/ws/events/", _session(world, "owner"))[0] is True
    for role in ("anonymous", "stranger", "grantee"):
        for kind in ("vnc", "serial"):
            connected, code = _socket(f"/ws/console/{kind}/{world.domain.pk}/", _session(world, role))
            assert (connected, code) == (False, 4403), (role, kind)
