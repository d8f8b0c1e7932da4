"""Groups that come from outside: a directory (LDAP) or an identity provider (OpenID Connect).

An administrator writes a mapping, one line per outside group: `students-2026 => students`. At each
sign-in through that source, the user's membership of every webvirt group the mapping names is set
from the groups the source reports (added to the ones they are in, taken out of the others); groups
the mapping does not name are left alone, so local groups keep working beside it. If administrator
groups are given, the user is an administrator exactly when they are in one of them; a local
administrator account (one with a usable local password) is never changed by a sign-in elsewhere.
Outside group names are compared without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

ARROW = "=>"
MAX_GROUP_NAME = 150  # Django's Group.name


@dataclass(frozen=True)
class Mapping:
    groups: dict[str, str] = field(default_factory=dict)  # outside name, lower-case -> webvirt group name
    admin: frozenset[str] = frozenset()  # outside names, lower-case, whose members are administrators


def parse(text: str, admin_groups: str = "") -> Mapping:
    """The mapping an administrator wrote; VirtError naming every bad line (with its number) otherwise.

    `text`: lines `outside group => webvirt group`; blank lines and lines starting with # are ignored.
    `admin_groups`: outside group names, one per line or separated by commas.
    """
    groups: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        outside, arrow, inside = (part.strip() for part in line.partition(ARROW))
        if not arrow or not outside or not inside:
            problems.append(f"line {number}: write it as 'outside group {ARROW} webvirt group'")
        elif len(inside) > MAX_GROUP_NAME:
            problems.append(f"line {number}: a webvirt group name has at most {MAX_GROUP_NAME} characters")
        elif outside.lower() in groups and groups[outside.lower()] != inside:
            problems.append(f"line {number}: '{outside}' is mapped twice")
        else:
            groups[outside.lower()] = inside
    if problems:
        raise VirtError("The group mapping has mistakes: " + "; ".join(problems) + ".", errors.INVALID)
    admin = frozenset(name.strip().lower() for name in admin_groups.replace(",", "\n").splitlines()
                      if name.strip())
    return Mapping(groups=groups, admin=admin)


def apply(user: Any, outside: Iterable[str], mapping: Mapping, source: str) -> list[str]:
    """Set `user`'s mapped groups (and administrator status) from the outside groups `source` reported
    at sign-in ("ldap", "oidc"). Returns the webvirt groups the user is now in through the mapping."""
    reported = {name.strip().lower() for name in outside if name.strip()}
    wanted = sorted({mapping.groups[name] for name in reported if name in mapping.groups})
    managed = set(mapping.groups.values())
    with audited(Actor(user=user, via=source), "user.groups_synced", user) as target, transaction.atomic():
        current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
        add = [Group.objects.get_or_create(name=name)[0] for name in wanted if name not in current]
        remove = list(Group.objects.filter(name__in=current - set(wanted)))
        user.groups.add(*add)
        user.groups.remove(*remove)
        if add or remove:
            target.detail.append(f"from {source}: added to {', '.join(g.name for g in add) or 'none'}; "
                                 f"removed from {', '.join(g.name for g in remove) or 'none'}")
        if mapping.admin and not user.has_usable_password():
            admin = bool(reported & mapping.admin)
            if admin != (user.is_staff and user.is_superuser):
                user.is_staff = user.is_superuser = admin
                user.save(update_fields=["is_staff", "is_superuser"])
                target.detail.append(f"administrator: {'yes' if admin else 'no'} (from {source})")
    return wanted
