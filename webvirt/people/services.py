"""People and groups: creating, editing, deactivating users, their passwords, and groups with their members.

The People pages, the API and the CSV import (`csvimport`) all come here; every change is audited and
checked against the policy (administrators only). webvirt keeps Django's User and Group: an
administrator is a user who is both staff and superuser, as `accounts.groupsync` sets them.

Two rules keep an installation from locking itself out: an administrator can neither deactivate their
own account nor take away their own administrator status, whichever page or API call asks.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group, User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Q, QuerySet

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.catalog.models import Quota, Template
from webvirt.domains.models import Domain
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.waves.models import Wave

MAX_NAME = 150  # Django's User.username, first_name, last_name and Group.name
# Generated passwords: four groups of four from letters and digits that cannot be mistaken for one another
# when read off a screen or a sheet of paper (no 0/o, 1/l/i): about 79 bits.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PASSWORD_GROUPS = 4


@dataclass
class UserData:
    """What an administrator sets on a user. The user name is set when the user is made, never changed."""

    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    groups: list[Group] = field(default_factory=list)
    is_admin: bool = False
    is_active: bool = True


def generate_password() -> str:
    """A random password to hand to a person: 'k7mq-x3tp-9wrf-h2vd'."""
    return "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(4)) for _ in range(PASSWORD_GROUPS))


def is_admin(user: User) -> bool:
    """Is this account an administrator (active or not)? policy.is_admin also wants it active."""
    return bool(user.is_staff or user.is_superuser)


def data_of(user: User) -> UserData:
    return UserData(username=user.get_username(), first_name=user.first_name, last_name=user.last_name,
                    email=user.email, groups=list(user.groups.order_by("name")), is_admin=is_admin(user),
                    is_active=user.is_active)


# Checks -------------------------------------------------------------------------------------------

def username_problem(username: str) -> str:
    """Why `username` cannot be a user name ("" when it can): the sentence, without the name itself."""
    if not username:
        return "the user name is empty"
    if len(username) > MAX_NAME:
        return f"a user name has at most {MAX_NAME} characters"
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        return "a user name has only letters, digits and @ . + - _ (no spaces)"
    return ""


def email_problem(email: str) -> str:
    if not email:
        return ""
    try:
        validate_email(email)
    except ValidationError:
        return f"'{email[:80]}' is not an e-mail address"
    return ""


def password_problems(password: str, user: User) -> list[str]:
    """What the site's password rules (AUTH_PASSWORD_VALIDATORS) say against `password` for `user`."""
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        return list(exc.messages)
    return []


def _check_data(data: UserData) -> None:
    problems = [p for p in (email_problem(data.email),) if p]
    for label, value in (("first name", data.first_name), ("last name", data.last_name)):
        if len(value) > MAX_NAME:
            problems.append(f"the {label} has more than {MAX_NAME} characters")
    if problems:
        raise VirtError(f"{'; '.join(problems).capitalize()}.", errors.INVALID)


def _check_password(password: str, user: User) -> None:
    problems = password_problems(password, user)
    if problems:
        raise VirtError(" ".join(problems), errors.INVALID)


def _check_not_self(actor: Actor, user: User, data: UserData) -> None:
    """An administrator may not lock themselves out: someone else has to do that."""
    if actor.user is None or actor.user.pk != user.pk:
        return
    if not data.is_active:
        raise VirtError("You cannot deactivate your own account: ask another administrator.", errors.CONFLICT)
    if not data.is_admin and is_admin(user):
        raise VirtError("You cannot remove your own administrator status: ask another administrator.",
                        errors.CONFLICT)


# Users --------------------------------------------------------------------------------------------

def users() -> QuerySet[User]:
    """Every user with their groups and the number of machines they own (`machines`)."""
    return (get_user_model().objects.annotate(machines=Count("owned_domains", distinct=True))
            .prefetch_related("groups").order_by("username"))


def search(query: str) -> QuerySet[User]:
    """The users whose user name, name or e-mail address contains `query` (any case)."""
    found = users()
    for word in query.replace("\x00", "").split()[:5]:  # PostgreSQL refuses NUL in text
        found = found.filter(Q(username__icontains=word) | Q(first_name__icontains=word)
                             | Q(last_name__icontains=word) | Q(email__icontains=word))
    return found


def machines_of(user: User) -> QuerySet[Domain]:
    """The machines `user` owns; they stay when the user is deactivated."""
    return Domain.objects.filter(owner=user).select_related("host", "template").order_by("name")


def _apply(user: User, data: UserData) -> list[str]:
    """Set `data` on `user` (saved); what changed, in words for the audit trail (never a password)."""
    changes = []
    for name, value in (("first_name", data.first_name), ("last_name", data.last_name), ("email", data.email)):
        if getattr(user, name) != value:
            changes.append(f"{name.replace('_', ' ')}: {value or '(empty)'}")
            setattr(user, name, value)
    if is_admin(user) != data.is_admin:
        user.is_staff = user.is_superuser = data.is_admin
        changes.append(f"administrator: {'yes' if data.is_admin else 'no'}")
    if user.is_active != data.is_active:
        user.is_active = data.is_active
        changes.append("active" if data.is_active else "deactivated")
    user.save()
    changes += _set_groups(user, data.groups)
    return changes


def _set_groups(user: User, groups: Iterable[Group]) -> list[str]:
    wanted = {g.pk: g for g in groups}
    current = {g.pk: g for g in user.groups.all()}
    add = [g for pk, g in wanted.items() if pk not in current]
    remove = [g for pk, g in current.items() if pk not in wanted]
    user.groups.add(*add)
    user.groups.remove(*remove)
    return ([f"added to {', '.join(sorted(g.name for g in add))}"] if add else []) + (
        [f"removed from {', '.join(sorted(g.name for g in remove))}"] if remove else [])


def create_user(actor: Actor, data: UserData, password: str = "") -> tuple[User, str]:
    """Make a user; `password` empty: one is generated. Returns the user and the generated password
    (to be shown once, never kept), or "" when the administrator gave one."""
    with audited(actor, "user.create") as target:
        target.set(kind="user", text=data.username)
        policy.require_admin(actor.user)
        problem = username_problem(data.username)
        if problem:
            raise VirtError(f"{problem.capitalize()}.", errors.INVALID)
        if get_user_model().objects.filter(username__iexact=data.username).exists():
            raise VirtError(f"There is already a user {data.username}.", errors.CONFLICT)
        _check_data(data)
        generated = "" if password else generate_password()
        user = get_user_model()(username=data.username, first_name=data.first_name, last_name=data.last_name,
                                email=data.email)
        _check_password(password or generated, user)
        with transaction.atomic():
            user.set_password(password or generated)
            user.save()
            _apply(user, data)
        target.set(user)
        target.detail.append(describe(data) + (", password generated" if generated else ", password given"))
    return user, generated


def describe(data: UserData) -> str:
    """A user's settings in a line for the audit trail."""
    parts = [f"name: {' '.join(p for p in (data.first_name, data.last_name) if p) or '(none)'}",
             f"e-mail: {data.email or '(none)'}",
             f"groups: {', '.join(sorted(g.name for g in data.groups)) or '(none)'}"]
    if data.is_admin:
        parts.append("administrator")
    if not data.is_active:
        parts.append("deactivated")
    return ", ".join(parts)


def update_user(actor: Actor, user: User, data: UserData) -> User:
    """Set a user's name, e-mail address, groups, administrator status and active flag."""
    with audited(actor, "user.update", user) as target:
        policy.require_admin(actor.user)
        _check_not_self(actor, user, data)
        _check_data(data)
        with transaction.atomic():
            target.detail += _apply(user, data) or ["nothing changed"]
    return user


def set_active(actor: Actor, user: User, active: bool) -> User:
    """Deactivate a user (they can no longer sign in or use their API tokens; their machines stay), or
    reactivate one."""
    with audited(actor, "user.reactivate" if active else "user.deactivate", user) as target:
        policy.require_admin(actor.user)
        data = data_of(user)
        data.is_active = active
        _check_not_self(actor, user, data)
        if user.is_active != active:
            user.is_active = active
            user.save(update_fields=["is_active"])
        machines = machines_of(user).count()
        if machines and not active:
            target.detail.append(f"{machines} machine(s) stay")
    return user


def reset_password(actor: Actor, user: User, password: str = "") -> str:
    """Give `user` a new password (checked by the site's rules); `password` empty: one is generated and
    returned, to be shown once. The user's other sessions end (Django checks the password in each)."""
    with audited(actor, "user.password_reset", user) as target:
        policy.require_admin(actor.user)
        generated = "" if password else generate_password()
        _check_password(password or generated, user)
        user.set_password(password or generated)
        user.save(update_fields=["password"])
        target.detail.append("generated" if generated else "typed by the administrator")
    return generated


# Groups -------------------------------------------------------------------------------------------

def groups() -> QuerySet[Group]:
    """Every group with its number of members (`members`) and the templates granted to it."""
    return (Group.objects.annotate(members=Count("user", distinct=True))
            .prefetch_related("granted_templates").order_by("name"))


def _check_group_name(name: str, group: Group | None = None) -> str:
    name = name.strip()
    if not name:
        raise VirtError("A group needs a name.", errors.INVALID)
    if len(name) > MAX_NAME:
        raise VirtError(f"A group name has at most {MAX_NAME} characters.", errors.INVALID)
    taken = Group.objects.filter(name__iexact=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    if taken.exists():
        raise VirtError(f"There is already a group {name}.", errors.CONFLICT)
    return name


def create_group(actor: Actor, name: str, members: Iterable[User] = ()) -> Group:
    with audited(actor, "group.create") as target:
        target.set(kind="group", text=name)
        policy.require_admin(actor.user)
        name = _check_group_name(name)
        with transaction.atomic():
            group = Group.objects.create(name=name)
            group.user_set.add(*members)
        target.set(group)
        names = sorted(u.get_username() for u in members)
        if names:
            target.detail.append(f"members: {', '.join(names)}")
    return group


def rename_group(actor: Actor, group: Group, name: str) -> Group:
    with audited(actor, "group.rename", group) as target:
        policy.require_admin(actor.user)
        old = group.name
        group.name = _check_group_name(name, group)
        group.save(update_fields=["name"])
        target.detail.append(f"from {old} to {group.name}")
    return group


@dataclass
class GroupUsage:
    """What refers to a group: what its deletion takes away."""

    templates: list[Template]
    waves: list[Wave]  # scheduled or running: they would make no machines for its members
    quota: Quota | None
    members: int

    @property
    def anything(self) -> bool:
        return bool(self.templates or self.waves or self.quota)


def usage_of(group: Group) -> GroupUsage:
    quota = Quota.objects.filter(group=group).first()
    return GroupUsage(templates=list(group.granted_templates.order_by("name")),
                      waves=list(Wave.objects.filter(group=group, state__in=(Wave.SCHEDULED, Wave.RUNNING))),
                      quota=quota, members=group.user_set.count())


def delete_group(actor: Actor, group: Group) -> None:
    """Delete a group: its members stay, the templates granted to it are no longer granted through it, its
    quota goes, and open waves that target it make no machines for its members any more."""
    with audited(actor, "group.delete", group) as target:
        policy.require_admin(actor.user)
        usage = usage_of(group)
        target.detail.append(f"{usage.members} member(s); templates: "
                             f"{', '.join(t.name for t in usage.templates) or 'none'}; open waves: "
                             f"{', '.join(w.name for w in usage.waves) or 'none'}"
                             + ("; its quota removed" if usage.quota else ""))
        group.delete()


def add_members(actor: Actor, group: Group, members: Iterable[User]) -> list[User]:
    """Put users into a group; returns those who were not in it yet."""
    with audited(actor, "group.members", group) as target:
        policy.require_admin(actor.user)
        current = set(group.user_set.values_list("pk", flat=True))
        added = [u for u in members if u.pk not in current]
        group.user_set.add(*added)
        target.detail.append(f"added {', '.join(u.get_username() for u in added) or 'nobody'}")
    return added


def remove_members(actor: Actor, group: Group, members: Iterable[User]) -> list[User]:
    """Take users out of a group; returns those who were in it."""
    with audited(actor, "group.members", group) as target:
        policy.require_admin(actor.user)
        current = set(group.user_set.values_list("pk", flat=True))
        removed = [u for u in members if u.pk in current]
        group.user_set.remove(*removed)
        target.detail.append(f"removed {', '.join(u.get_username() for u in removed) or 'nobody'}")
    return removed


def set_members(actor: Actor, group: Group, members: Iterable[User]) -> None:
    """Make `members` exactly the group's members."""
    wanted = {u.pk: u for u in members}
    current = {u.pk: u for u in group.user_set.all()}
    with transaction.atomic():
        if set(wanted) - set(current):
            add_members(actor, group, [u for pk, u in wanted.items() if pk not in current])
        if set(current) - set(wanted):
            remove_members(actor, group, [u for pk, u in current.items() if pk not in wanted])


def users_named(names: Iterable[str]) -> list[User]:
    """The users with these user names (any case); VirtError naming those that do not exist."""
    wanted = [n.strip() for n in names if n.strip()]
    found = {u.get_username().lower(): u for u in get_user_model().objects.filter(
        username__in=wanted)} if wanted else {}
    # username__in is exact; the names people type may differ in case, so look up the rest one by one.
    for name in wanted:
        if name.lower() not in found:
            user = get_user_model().objects.filter(username__iexact=name).first()
            if user is not None:
                found[name.lower()] = user
    missing = [n for n in wanted if n.lower() not in found]
    if missing:
        raise VirtError(f"No user is called {', '.join(missing[:20])}.", errors.INVALID)
    return list({found[n.lower()].pk: found[n.lower()] for n in wanted}.values())
