"""Importing a class from CSV: a preview first, then all of it or nothing.

The file is UTF-8 text (a byte order mark is fine), comma-separated, with a header line naming its
columns: `username` (required), `name`, `email`, `groups` and `password` (optional, in any order).

- `name` is split at its last space: the words before it are the first name, the last word the last
  name ("Ada King Lovelace" -> "Ada King" / "Lovelace"); a single word is the first name.
- A line may leave out cells at its end (they are empty); a line with more cells than the header is bad.
- `groups` are separated by `;`. A group that does not exist is created; one that exists under another
  case ("Students" for "students") is the existing one.
- A user that does not exist yet is created, with the `password` given or, without one, a generated
  password that the import answers once (it is kept nowhere). A user that exists is updated: a
  non-empty name or e-mail cell replaces theirs and they are added to the groups named; an empty cell
  changes nothing, they are never taken out of a group, and their password is left alone (reset it on
  their page). Importing the same file again therefore changes nothing.
- Administrators are never changed by an import: a line naming one is a bad line.

Every bad line is reported with its number, and if there is any, nothing is written. `plan` says what
an import would do; `apply` does it, planning again from the same text (the preview's fingerprint makes
sure it still does what the administrator was shown).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, get_hasher, make_password
from django.contrib.auth.models import Group, User
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.people import services
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

MAX_BYTES = 2 * 1024**2
MAX_LINES = 5000  # people, not counting the header
COLUMNS = ("username", "name", "email", "groups", "password")
HEADER = "username,name,email,groups"
CREATE, UPDATE, UNCHANGED, ERROR = "create", "update", "unchanged", "error"
# Generated passwords are ~79 random bits: a slow hash adds nothing to guessing them, and the default
# PBKDF2 costs most of a second each (minutes for a large class). They are hashed with fewer rounds;
# Django re-hashes them with the full count at the user's first sign-in (the hasher's must_update).
GENERATED_ITERATIONS = 1_000
TOKEN_SALT = "webvirt.people.import"
TOKEN_MAX_AGE = 3600  # seconds a preview may be applied after it was shown
SHOWN_ERRORS = 20  # in the one-sentence summary; the page and the API list them all


@dataclass
class Line:
    """One person in the file, and what importing them would do."""

    number: int
    username: str
    action: str = ""
    changes: list[str] = field(default_factory=list)  # what an update changes, or what a new user gets
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_name: str | None = None  # None: the cell is empty (or there is no such column): keep theirs
    last_name: str | None = None
    email: str | None = None
    groups: list[str] = field(default_factory=list)
    password: str = field(default="", repr=False)
    user: User | None = field(default=None, repr=False)

    @property
    def what(self) -> str:
        """The preview's words for this line."""
        text = "; ".join(self.errors if self.action == ERROR else self.changes + self.notes)
        return text


@dataclass
class Plan:
    lines: list[Line] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # of the whole file: "line 1: unknown column 'phone'"
    new_groups: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.problems + [f"line {line.number}{f' ({line.username[:40]})' if line.username else ''}: "
                                f"{'; '.join(line.errors)}" for line in self.lines if line.errors]

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, action: str) -> int:
        return sum(1 for line in self.lines if line.action == action)

    @property
    def counts(self) -> dict[str, int]:
        return {action: self.count(action) for action in (CREATE, UPDATE, UNCHANGED, ERROR)}

    def fingerprint(self) -> str:
        """What the import would do, in a digest: a preview is applied only while it still holds."""
        shape = [[line.number, line.username, line.action, line.changes, line.notes] for line in self.lines]
        return hashlib.sha256(json.dumps([shape, self.new_groups]).encode()).hexdigest()

    def summary(self) -> str:
        """The bad lines in one sentence (the first ones), for a message or an API error."""
        found = self.errors
        more = f" (and {len(found) - SHOWN_ERRORS} more)" if len(found) > SHOWN_ERRORS else ""
        return (f"Nothing was imported: {len(found)} problem{'s' if len(found) != 1 else ''} in the file: "
                + "; ".join(found[:SHOWN_ERRORS]) + more + ".")


class ImportRefused(VirtError):
    """The file has bad lines: nothing was written. `plan` has every line, each with its reasons."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan.summary(), errors.INVALID)
        self.plan = plan


@dataclass
class Result:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    new_groups: list[str] = field(default_factory=list)
    passwords: list[tuple[str, str]] = field(default_factory=list)  # (username, generated password): shown once

    def passwords_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["username", "password"])
        writer.writerows(self.passwords)
        return out.getvalue()


# Reading ------------------------------------------------------------------------------------------

def read(data: bytes) -> str:
    """An uploaded file as text; VirtError when it is too large or not UTF-8."""
    if len(data) > MAX_BYTES:
        raise VirtError(f"The file is larger than {MAX_BYTES // 1024**2} MiB: import the class in parts.",
                        errors.INVALID)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise VirtError(f"Line {line} is not UTF-8 text: save the file as CSV UTF-8 and try again.",
                        errors.INVALID) from None


def split_name(name: str) -> tuple[str, str]:
    """'Ada King Lovelace' -> ('Ada King', 'Lovelace'); 'Plato' -> ('Plato', '')."""
    words = name.split()
    if len(words) < 2:
        return " ".join(words), ""
    return " ".join(words[:-1]), words[-1]


def _header(row: list[str], plan: Plan, number: int) -> list[str]:
    """The columns the header names, or [] (with the problem in `plan`) when it is not a usable header."""
    names = [cell.strip().lower() for cell in row]
    if len(row) == 1 and ";" in row[0] and "username" in names[0]:
        plan.problems.append(f"line {number}: the columns are separated by ';'; separate them with commas (and "
                             "groups with ';')")
        return []
    if "username" not in names:
        known = [n for n in names if n in COLUMNS]
        plan.problems.append(f"line {number}: the first line must be the header {HEADER}"
                             + (" (it has no 'username' column)" if known else ""))
        return []
    for name in names:
        if name not in COLUMNS:
            plan.problems.append(f"line {number}: unknown column '{name[:40]}' (the columns are "
                                 f"{', '.join(COLUMNS)})")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        plan.problems.append(f"line {number}: the column {', '.join(duplicated)} is named twice")
    return [] if plan.problems else names


def _rows(text: str, plan: Plan) -> list[tuple[int, dict[str, str]]]:
    """The records under the header, each with the number of the line it starts on."""
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    columns: list[str] = []
    start = 1
    try:
        for row in reader:
            number, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if not plan.columns and not columns:
                columns = plan.columns = _header(row, plan, number) or ["?"]
                if plan.problems:
                    return []
                continue
            if len(rows) == MAX_LINES:
                plan.problems.append(f"line {number}: the file has more than {MAX_LINES:,} people: import the "
                                     "class in parts")
                return rows
            if len(row) > len(columns):
                rows.append((number, {"username": row[0].strip(),
                                      "?": f"{len(row)} values, but the header names {len(columns)} columns"}))
                continue
            # Cells missing at the end of a line are empty ones: "bob,Bob" under username,name,email,groups.
            rows.append((number, {name: cell.strip() for name, cell in zip(columns, row, strict=False)}))
    except csv.Error as exc:
        plan.problems.append(f"line {start}: this is not valid CSV ({exc}); nothing after it was read")
    return rows


# Planning -----------------------------------------------------------------------------------------

def plan(text: str) -> Plan:
    """What importing `text` would do, line by line, with every problem found; nothing is written."""
    result = Plan()
    if len(text.encode()) > MAX_BYTES:
        result.problems.append(f"the file is larger than {MAX_BYTES // 1024**2} MiB: import the class in parts")
        return result
    if not text.strip():
        result.problems.append(f"the file is empty: its first line must be the header {HEADER}")
        return result
    if "\x00" in text:  # no database keeps it in text, and no CSV export writes it
        at = text[:text.index("\x00")].count("\n") + 1
        result.problems.append(f"line {at}: a NUL character: this is not a text file")
        return result
    rows = _rows(text, result)
    if not rows and not result.problems:
        result.problems.append("the file has a header but nobody under it")
    if result.problems and not rows:
        return result
    existing = _existing([values.get("username", "") for _, values in rows])
    groups = {name.lower(): name for name in Group.objects.values_list("name", flat=True)}
    seen: dict[str, int] = {}
    for number, values in rows:
        line = _line(number, values, existing, seen)
        _plan_groups(line, groups, result)
        _decide(line)
        result.lines.append(line)
    return result


def _existing(usernames: list[str]) -> dict[str, User]:
    """The users the file names, by lower-case user name (one query, with their groups)."""
    lowered = sorted({name.lower() for name in usernames if name})
    found: dict[str, User] = {}
    for start in range(0, len(lowered), 500):
        for user in (get_user_model().objects.annotate(lower_name=Lower("username"))
                     .filter(lower_name__in=lowered[start:start + 500]).prefetch_related("groups")):
            found[user.get_username().lower()] = user
    return found


def _line(number: int, values: dict[str, str], existing: dict[str, User], seen: dict[str, int]) -> Line:
    username = values.get("username", "")
    line = Line(number=number, username=username)
    if "?" in values:
        line.errors.append(values["?"])
        return line
    problem = services.username_problem(username)
    if problem:
        line.errors.append(problem)
    elif username.lower() in seen:
        line.errors.append(f"{username} is already on line {seen[username.lower()]}")
    else:
        seen[username.lower()] = number
    user = existing.get(username.lower())
    if user is not None and user.get_username() != username:
        line.errors.append(f"there is a user {user.get_username()} (the same name in another case): write it "
                           "that way")
    elif user is not None and services.is_admin(user):
        line.errors.append(f"{username} is an administrator: an import never changes administrators")
    line.user = user
    _read_cells(line, values)
    return line


def _read_cells(line: Line, values: dict[str, str]) -> None:
    name = " ".join(values.get("name", "").split())
    if name:
        line.first_name, line.last_name = split_name(name)
        if len(line.first_name) > services.MAX_NAME or len(line.last_name) > services.MAX_NAME:
            line.errors.append(f"a first or last name has at most {services.MAX_NAME} characters")
    email = values.get("email", "")
    if email:
        line.email = email
        problem = services.email_problem(email)
        if problem:
            line.errors.append(problem)
    line.groups = list(dict.fromkeys(g.strip() for g in values.get("groups", "").split(";") if g.strip()))
    for group in line.groups:
        if len(group) > services.MAX_NAME:
            line.errors.append(f"a group name has at most {services.MAX_NAME} characters")
    line.password = values.get("password", "")


def _plan_groups(line: Line, groups: dict[str, str], result: Plan) -> None:
    """Name the file's groups as they exist (any case), and note the ones the import will create."""
    named = []
    for group in line.groups:
        if group.lower() not in groups:
            groups[group.lower()] = group
            if len(group) <= services.MAX_NAME:
                result.new_groups.append(group)
        named.append(groups[group.lower()])
        if groups[group.lower()] in result.new_groups:
            line.notes.append(f"new group {groups[group.lower()]}")
    line.groups = named


def _decide(line: Line) -> None:
    if line.errors:
        line.action = ERROR
    elif line.user is None:
        _decide_new(line)
    else:
        _decide_existing(line, line.user)


def _decide_new(line: Line) -> None:
    candidate = get_user_model()(username=line.username, first_name=line.first_name or "",
                                 last_name=line.last_name or "", email=line.email or "")
    if line.password:
        problems = services.password_problems(line.password, candidate)
        if problems:
            line.errors.append("the password: " + " ".join(problems))
            line.action = ERROR
            return
    line.action = CREATE
    full_name = " ".join(p for p in (line.first_name, line.last_name) if p)
    line.changes = [f"name: {full_name or '(none)'}", f"e-mail: {line.email or '(none)'}",
                    f"groups: {', '.join(line.groups) or '(none)'}",
                    "password from the file" if line.password else "password generated"]


def _decide_existing(line: Line, user: User) -> None:
    changes = []
    for label, attr in (("first name", "first_name"), ("last name", "last_name"), ("e-mail", "email")):
        new = getattr(line, attr)
        if new is not None and new != getattr(user, attr):
            changes.append(f"{label}: {getattr(user, attr) or '(empty)'} → {new}")
    current = {g.name for g in user.groups.all()}
    added = [g for g in line.groups if g not in current]
    if added:
        changes.append(f"added to {', '.join(added)}")
    line.changes = changes
    line.action = UPDATE if changes else UNCHANGED
    if line.password:
        line.notes.append("password left as it is (reset it on their page)")
    if not user.is_active:
        line.notes.append("deactivated: stays so")


# Applying -----------------------------------------------------------------------------------------

def apply(actor: Actor, text: str, fingerprint: str = "") -> Result:
    """Import `text`: all of it, or nothing when any line is bad (ImportRefused, with every line). With
    the `fingerprint` of a preview, refuse if the import would now do anything other than it showed."""
    with audited(actor, "people.import") as target:
        target.set(kind="import", text="CSV import")
        policy.require_admin(actor.user)
        planned = plan(text)
        if not planned.ok:
            raise ImportRefused(planned)
        if fingerprint and planned.fingerprint() != fingerprint:
            raise VirtError("People or groups changed since the preview: look at the new preview, then import.",
                            errors.CONFLICT)
        hashed = _hash_passwords(planned)  # before the transaction: slow work holds no lock
        try:
            with transaction.atomic():
                result = _write(actor, planned, hashed)
        except IntegrityError:
            raise VirtError("Someone made one of these users or groups during the import; nothing was imported. "
                            "Preview the file again.", errors.CONFLICT) from None
        target.detail.append(f"{len(result.created)} created, {len(result.updated)} updated, "
                             f"{len(result.unchanged)} unchanged; new groups: "
                             f"{', '.join(result.new_groups) or 'none'}; "
                             f"{len(result.passwords)} password(s) generated")
    return result


def _hash_passwords(planned: Plan) -> dict[int, tuple[str, str]]:
    """Line number -> (generated password or "", hash) for every user to be created."""
    hashed = {}
    for line in planned.lines:
        if line.action != CREATE:
            continue
        if line.password:
            hashed[line.number] = ("", make_password(line.password))
        else:
            generated = services.generate_password()
            hashed[line.number] = (generated, quick_hash(generated))
    return hashed


def quick_hash(password: str) -> str:
    """`password` hashed for the few moments before its first use (see GENERATED_ITERATIONS)."""
    hasher = get_hasher()
    if isinstance(hasher, PBKDF2PasswordHasher):
        return hasher.encode(password, hasher.salt(), iterations=GENERATED_ITERATIONS)
    return make_password(password)


def _write(actor: Actor, planned: Plan, hashed: dict[int, tuple[str, str]]) -> Result:
    result = Result()
    for name in planned.new_groups:
        services.create_group(actor, name)
        result.new_groups.append(name)
    groups = {g.name: g for g in Group.objects.filter(name__in={g for line in planned.lines for g in line.groups})}
    for line in planned.lines:
        if line.action == CREATE:
            generated, password_hash = hashed[line.number]
            _create(actor, line, password_hash, [groups[g] for g in line.groups])
            result.created.append(line.username)
            if generated:
                result.passwords.append((line.username, generated))
        elif line.action == UPDATE and line.user is not None:
            _update(actor, line, line.user, [groups[g] for g in line.groups])
            result.updated.append(line.username)
        else:
            result.unchanged.append(line.username)
    return result


def _create(actor: Actor, line: Line, password_hash: str, groups: list[Group]) -> None:
    with audited(actor, "user.create") as target, transaction.atomic():
        user = get_user_model()(username=line.username, first_name=line.first_name or "",
                                last_name=line.last_name or "", email=line.email or "", password=password_hash)
        user.save()
        user.groups.add(*groups)
        target.set(user)
        target.detail.append(f"CSV import line {line.number}: " + ", ".join(line.changes))


def _update(actor: Actor, line: Line, user: User, groups: list[Group]) -> None:
    with audited(actor, "user.update", user) as target, transaction.atomic():
        for attr in ("first_name", "last_name", "email"):
            if getattr(line, attr) is not None:
                setattr(user, attr, getattr(line, attr))
        user.save(update_fields=["first_name", "last_name", "email"])
        user.groups.add(*groups)
        target.detail.append(f"CSV import line {line.number}: " + "; ".join(line.changes))


# The preview's token ------------------------------------------------------------------------------

def sign(text: str, planned: Plan) -> str:
    """The previewed file and what it would do, signed: the Import button posts it back unchanged."""
    return signing.dumps({"csv": text, "plan": planned.fingerprint()}, salt=TOKEN_SALT, compress=True)


def unsign(token: str) -> tuple[str, str]:
    """The file and the fingerprint of a preview's token; VirtError when it is old or altered."""
    try:
        value = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        raise VirtError("That preview is more than an hour old or was altered: preview the file again.",
                        errors.INVALID) from None
    return str(value["csv"]), str(value["plan"])
