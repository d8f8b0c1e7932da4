"""The one place that decides who may see and do what.

HTML views, API viewsets, WebSocket consumers, console tickets and Celery tasks all ask here.
An object a user may not see is reported as missing (404), never as forbidden, so its existence
does not leak.

- Administrators (staff) see and do everything.
- Other users see the domains they own (their clones) and may operate, console, delete, extend
  and snapshot them (and reset them to their template), but not edit their XML; they see the
  templates granted to them or to one of their groups and may clone them; they see their own
  jobs and may cancel and retry them. Hosts, the audit trail and everything else stay hidden from them.
- Everyone's SSH keys are theirs alone (`own`): nobody, not even an administrator, sees or manages
  another person's keys through webvirt.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Model, Q, QuerySet
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

if TYPE_CHECKING:  # For casts only: the apps' models load after this module.
    from webvirt.domains.models import Domain
    from webvirt.jobs.models import Job

M = TypeVar("M", bound=Model)

# Who the policy is asked about: a signed-in user (webvirt keeps Django's User model), the anonymous
# visitor of a request or socket, or nobody (a system task). The functions below accept any value
# (`object`) and decide by what it is, not by what a caller's annotation says: a lazy request.user
# or scope["user"] passes isinstance() as the User it wraps, and anything else is nobody.
PolicyUser = User | AnonymousUser | None

VIEW = "view"
CHANGE = "change"
OPERATE = "operate"  # lifecycle actions
DELETE = "delete"
ADD = "add"
CONSOLE = "console"  # open a domain's graphical or serial console
USE = "use"  # clone a template
EXTEND = "extend"  # push back a clone's expiry
SNAPSHOT = "snapshot"  # take, revert and delete snapshots; reset a linked clone to its template

# What an owner may do to a domain they own.
OWNER_ACTIONS = {VIEW, OPERATE, CONSOLE, DELETE, EXTEND, SNAPSHOT}


class Denied(Exception):
    """Refused by policy. `hidden` means the object must look like it does not exist."""

    def __init__(self, message: str, hidden: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hidden = hidden


def active_user(user: object) -> User | None:
    """`user` if it is a signed-in, active user; None for the anonymous visitor, nobody, or anything else."""
    if isinstance(user, User) and user.is_authenticated and user.is_active:
        return user
    return None


def is_admin(user: object) -> TypeGuard[User]:
    found = active_user(user)
    return found is not None and (found.is_staff or found.is_superuser)


def visible(user: object, queryset: QuerySet[M]) -> QuerySet[M]:
    """The objects of `queryset` that `user` may see."""
    if is_admin(user):
        return queryset
    user = active_user(user)
    if user is None:
        return queryset.none()
    label = queryset.model._meta.label
    if label == "domains.Domain":
        return queryset.filter(owner=user)
    if label == "jobs.Job":
        return queryset.filter(user=user)
    if label == "catalog.Template":
        return queryset.filter(Q(users=user) | Q(groups__in=user.groups.all())).distinct()
    return queryset.none()


def own(user: object, queryset: QuerySet[M]) -> QuerySet[M]:
    """The objects of `queryset` (a model with a `user` field) that belong to `user`; administrators
    get only their own too, since these are personal (SSH keys) and managing them is for their owner."""
    user = active_user(user)
    if user is None:
        return queryset.none()
    return queryset.filter(user=user)


def can(user: object, action: str, obj: Model | type[Model] | None = None) -> bool:
    """May `user` do `action` to `obj` (an instance, or a model class for ADD)?

    Callers check visibility first (`require` does both), so an instance here is one the user sees.
    """
    if is_admin(user):
        return True
    user = active_user(user)
    if user is None or not isinstance(obj, Model):
        return False
    label = obj._meta.label  # says which model obj is: the casts below only tell mypy
    if label == "domains.Domain":
        return cast("Domain", obj).owner_id == user.pk and action in OWNER_ACTIONS
    if label == "jobs.Job":
        # People cancel and retry their own jobs.
        return cast("Job", obj).user_id == user.pk and action in (VIEW, CHANGE)
    if label == "catalog.Template":
        return action in (VIEW, USE)
    return False


def may_receive(user: object, event: dict[str, Any]) -> bool:
    """May `user` be told about this live event (a domain, host, job, network or pool change)?"""
    if is_admin(user):
        return True
    user = active_user(user)
    if user is None:
        return False
    if event.get("type") == "job":
        return bool(event.get("user")) and event.get("user") == user.pk
    if event.get("type") in ("domain", "snapshots"):
        return bool(event.get("owner")) and event.get("owner") == user.pk
    return False


def require(user: object, action: str, obj: Model | type[Model] | None = None) -> None:
    """Raise Denied unless `user` may do `action` to `obj`."""
    # The default manager: every model has one (here `objects`), which the type of a plain Model can promise.
    if isinstance(obj, Model) and not visible(user, type(obj)._default_manager.filter(pk=obj.pk)).exists():
        raise Denied("Not found.", hidden=True)
    if not can(user, action, obj):
        raise Denied("You are not allowed to do that.")


def signed_in(request: Any) -> User:
    """The user of a request that only signed-in people reach (pages: LoginRequiredMiddleware; the
    API: ApiPermission). Anyone else is refused as not signed in, should a route ever let them by."""
    if not isinstance(request.user, User):
        raise NotAuthenticated()
    return request.user


def require_admin(user: object) -> None:
    if not is_admin(user):
        raise Denied("Only administrators may do that.", hidden=True)


class ApiPermission(BasePermission):
    """API access: authenticated users only; objects are filtered and checked by `require`."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)


def from_trusted_proxy(peer: str | None) -> bool:
    """Is the direct peer one of our reverse proxies, whose X-Forwarded-* headers are believed?"""
    return bool(peer) and peer in settings.WEBVIRT_TRUSTED_PROXIES


def client_address(peer: str | None, forwarded: str | None) -> str | None:
    """The client's address for the audit trail: the direct peer, unless that is a trusted proxy.

    Only a proxy we trust may say who the client is, and only the LAST entry of X-Forwarded-For is
    its word (what it appended); the entries before it are whatever the client sent, so anyone
    could forge them. Every HTTP request, WebSocket and console gateway connection asks here.
    """
    if forwarded and from_trusted_proxy(peer):
        return _ip(forwarded.split(",")[-1].strip())
    return _ip(peer)


def _ip(value: str | None) -> str | None:
    # The audit trail stores an IP address (PostgreSQL's inet refuses anything else): no address beats a failed write.
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return None


@dataclass
class Actor:
    """Who is acting and from where: what policy checks and the audit trail need."""

    # A PolicyUser. Typed loosely still: jobs, catalog, install and snapshots store it on models that
    # want a User and narrow it themselves; the policy functions take any value and check what it is.
    user: Any
    address: str | None = None
    via: str = "ui"

    @classmethod
    def from_request(cls, request: Any, via: str = "ui") -> Actor:
        address = client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))
        return cls(user=request.user, address=address, via=via)

    @classmethod
    def from_scope(cls, scope: dict[str, Any], via: str = "ws") -> Actor:
        """The actor of an ASGI connection: the user set by the auth middleware, the peer of its socket."""
        client = scope.get("client") or (None, None)
        # Several X-Forwarded-For lines are one list (RFC 9110); the last entry is still the proxy's.
        forwarded = ", ".join(value.decode("latin-1") for name, value in scope.get("headers", [])
                              if name == b"x-forwarded-for")
        return cls(user=scope.get("user"), address=client_address(client[0], forwarded), via=via)
