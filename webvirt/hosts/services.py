"""Everything done to hosts, shared by the HTML views, the API and tasks."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import libvirt
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webvirt import kv
from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.events.leases import lease_key
from webvirt.hosts.connections import call, manager
from webvirt.hosts.models import Host
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors, hostinfo
from webvirt.virt.connection import Target, check_uri
from webvirt.virt.domains import DomainState
from webvirt.virt.errors import VirtError

CONNECT_TIMEOUT = 5.0


@dataclass
class HostData:
    """What a person (form) or client (API) may set on a host. Blank secrets keep the stored ones."""

    name: str
    uri: str
    description: str = ""
    username: str = ""
    password: str = ""
    ssh_key: str = ""
    clear_credentials: bool = False
    migration_uri: str = ""


def uri_changes(host: Host | None, data: HostData) -> bool:
    return host is not None and data.uri.strip() != host.uri.strip()


def _require_credentials_again(host: Host, data: HostData) -> None:
    """A stored password or key was given for one address; a new URI must not receive it unasked.

    Otherwise anyone allowed to edit a host could point it at a server of their own and collect the
    credential from the connection test.
    """
    if not uri_changes(host, data) or data.clear_credentials:
        return
    missing = [what for what, stored, given in (("password", host.has_password, data.password),
                                                 ("private key", host.has_ssh_key, data.ssh_key))
               if stored and not given]
    if missing:
        ones = "one is" if len(missing) == 1 else "ones are"
        raise VirtError(f"Enter the {' and the '.join(missing)} again when you change the URI: "
                        f"the stored {ones} not sent to a new address.", errors.INVALID)


@dataclass
class Probe:
    """What one connection to a host read before it was closed: its facts and its domains.

    `domains` is None when the host answered but listing its domains failed: the host is registered
    anyway, and the event watcher that takes it loads them.
    """

    facts: dict
    domains: list[DomainState] | None
    listed_at: datetime


def probe_host(data: HostData, host: Host | None = None) -> Probe:
    """Open one fresh connection with the given settings, read the facts and the domains, close it.

    Raises VirtError. The connection is never cached: a web process registering hosts would otherwise
    keep one open per host it registered, while the event watchers hold the long-lived ones.
    """
    check_uri(data.uri)
    # Stored secrets go only to the address they were given for (see _require_credentials_again).
    keep = host is not None and not data.clear_credentials and not uri_changes(host, data)
    stored = host.target() if keep and host is not None else None
    password = data.password or (stored.password if stored else "")
    ssh_key = data.ssh_key or (stored.ssh_key if stored else "")
    probe = Target(key=f"probe-{id(data)}", uri=data.uri.strip(), name=data.name, username=data.username,
                   password=password, ssh_key=ssh_key)
    try:
        conn = manager.open(probe, timeout=CONNECT_TIMEOUT)
    finally:
        manager.forget_key(probe)  # ssh has read it by now; a decrypted key must not outlive the probe.
    try:
        facts = hostinfo.host_facts(conn)
        listed_at = timezone.now()
        try:
            domains: list[DomainState] | None = virt_domains.list_states(conn)
        except (libvirt.libvirtError, VirtError):
            domains = None
        return Probe(facts, domains, listed_at)
    except libvirt.libvirtError as exc:
        raise errors.from_libvirt(exc) from None
    finally:
        conn.close()


def _apply(host: Host, data: HostData, facts: dict | None) -> None:
    """Copy `data` onto `host`; `facts` read from it now (then it is online), or None when nothing
    connected (registered unchecked: its status stays unknown until a watcher reaches it)."""
    host.name, host.uri = data.name.strip(), data.uri.strip()
    host.description, host.username = data.description.strip(), data.username.strip()
    host.migration_uri = _migration_uri(data.migration_uri)
    if data.clear_credentials:
        host.password_encrypted = host.ssh_key_encrypted = ""
    if data.password:
        host.set_password(data.password)
    if data.ssh_key:
        host.set_ssh_key(data.ssh_key)
    if facts is None:
        return
    now = timezone.now()
    host.facts, host.facts_updated = facts, now
    if host.status != Host.ONLINE:
        host.status, host.status_changed = Host.ONLINE, now
    host.status_reason = ""


@transaction.atomic
def _save(host: Host, data: HostData, found: Probe | None) -> None:
    """Write the host and, when the probe listed them, its domains into the cache."""
    from webvirt.domains.services import reconcile

    _apply(host, data, found.facts if found else None)
    host.save()
    if found is not None and found.domains is not None:
        reconcile(host, found.domains, found.listed_at)


def _migration_uri(text: str) -> str:
    """Blank (libvirt's default), or where QEMU's migration stream goes, such as tcp://10.0.0.5:49152."""
    text = text.strip()
    if text and not re.fullmatch(r"(tcp|rdma|unix)://[\w.:\[\]-]+/?", text):
        raise VirtError(f"'{errors.quote(text)}' is not a migration address: give one like tcp://10.0.0.5 or "
                        "tcp://10.0.0.5:49152, or leave it empty.", errors.INVALID)
    return text


def _check_name(data: HostData, host: Host | None) -> None:
    if not data.name.strip():
        raise VirtError("Give the host a name.", errors.INVALID)
    clash = Host.objects.filter(name=data.name.strip())
    if host is not None:
        clash = clash.exclude(pk=host.pk)
    if clash.exists():
        raise VirtError(f"A host named '{data.name.strip()}' is already registered. Choose another name.",
                        errors.CONFLICT)


def create_host(actor: Actor, data: HostData) -> Host:
    """Register a host after a successful test connection, whose answers also load its domains into the cache."""
    return _register(actor, data, lambda: probe_host(data))


def _register(actor: Actor, data: HostData, probe: Callable[[], Probe | None]) -> Host:
    """Register one host, audited: the policy, its name, then `probe`, the connection test (which may
    already have run: `create_hosts` tests many at once; None: registered without one)."""
    with audited(actor, "host.create") as target:
        target.set(kind="host", text=data.name)
        policy.require(actor.user, policy.ADD, Host)
        _check_name(data, None)
        found = probe()
        host = Host()
        _save(host, data, found)
        target.set(host)
    return host


def update_host(actor: Actor, host: Host, data: HostData) -> Host:
    with audited(actor, "host.update", host) as target:
        policy.require(actor.user, policy.CHANGE, host)
        _check_name(data, host)
        _require_credentials_again(host, data)
        found = probe_host(data, host)
        old_uri, old_key = host.uri, host.target().key
        _save(host, data, found)
        manager.drop(old_key)  # a connection this process holds under the old settings
        target.detail.append(f"uri {old_uri} -> {host.uri}" if old_uri != host.uri else "settings changed")
    return host


# Many hosts at once (manage.py addhosts) ----------------------------------------------------------

FILE_COLUMNS = ("name", "uri", "description", "username", "migration_uri")
SECRET_COLUMNS = ("password", "ssh_key", "ssh key", "private_key", "key")
PARALLEL_PROBES = 16
_LIMITS = {"name": 100, "uri": 500, "description": 200, "username": 100, "migration_uri": 200}


@dataclass
class HostRow:
    """A host read from a file, with the line it came from (for the errors)."""

    line: int
    data: HostData


def read_host_file(text: str) -> list[HostRow]:
    """The hosts of a CSV text with a header line, checked as a whole; VirtError lists every problem
    with its line. Names must be new (in the file and in webvirt) and URIs libvirt URIs."""
    reader = csv.DictReader(io.StringIO(text), restval="")
    header = [(column or "").strip().lower() for column in reader.fieldnames or []]
    problems = _header_problems(header)
    if problems:
        raise _listed("The file was not read", problems, errors.INVALID)
    reader.fieldnames = header
    rows: list[HostRow] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            problems.append(f"line {line}: it has more cells than the header has columns.")
            continue
        cell = {column: (record.get(column) or "").strip() for column in FILE_COLUMNS}
        data = HostData(name=cell["name"], uri=cell["uri"], description=cell["description"],
                        username=cell["username"], migration_uri=cell["migration_uri"])
        problems += [f"line {line}: {sentence}" for sentence in _row_problems(data, first_line, line)]
        rows.append(HostRow(line, data))
    if not rows and not problems:
        problems.append("it has a header and no hosts.")
    if problems:
        raise _listed("Nothing was registered: the file has mistakes", problems, errors.INVALID)
    return rows


def _header_problems(header: list[str]) -> list[str]:
    problems = []
    for column in header:
        if column in SECRET_COLUMNS:
            problems.append(f"line 1: the column '{column}' would hold a secret, which does not belong in a file; "
                            "set passwords and keys on each host's page or through the API once it is registered.")
        elif column not in FILE_COLUMNS:
            problems.append(f"line 1: webvirt knows no column '{errors.quote(column)}'; the columns are "
                            f"{', '.join(FILE_COLUMNS)}.")
    problems += [f"line 1: the header has no '{needed}' column." for needed in ("name", "uri") if needed not in header]
    if len(set(header)) != len(header):
        problems.append("line 1: a column is named twice.")
    return problems


def _row_problems(data: HostData, first_line: dict[str, int], line: int) -> list[str]:
    """What is wrong with one row; `first_line` (name -> line) finds names used twice in the file."""
    problems = [f"the {column.replace('_', ' ')} is longer than {limit} characters."
                for column, limit in _LIMITS.items() if len(getattr(data, column)) > limit]
    for check in (lambda: _check_name(data, None), lambda: check_uri(data.uri),
                  lambda: _migration_uri(data.migration_uri)):
        try:
            check()
        except VirtError as exc:
            problems.append(exc.message)
    if data.name and data.name in first_line:
        problems.append(f"the name '{data.name}' is already used on line {first_line[data.name]}.")
    first_line.setdefault(data.name, line)
    return problems


def create_hosts(actor: Actor, rows: list[HostRow], check: bool = True) -> list[Host]:
    """Register all of `rows` or none: each host tested with one connection of its own, several at
    once, then all written in one transaction. Without `check` nothing connects: the watchers reach
    the hosts and load their domains. Each host is audited as `create_host` audits it."""
    with audited(actor, "host.create_many") as target:
        target.set(kind="host", text=f"{len(rows)} hosts")
        policy.require(actor.user, policy.ADD, Host)
        found = _probe_all(rows) if check else dict.fromkeys(range(len(rows)))
        failed = {i: result for i, result in found.items() if isinstance(result, VirtError)}
        if failed:
            for i, exc in failed.items():  # in the trail as the failure create_host would record
                with suppress(VirtError):
                    _register(actor, rows[i].data, partial(_raise, exc))
            raise _listed(f"Nothing was registered: {len(failed)} of {len(rows)} hosts failed",
                          [f"line {rows[i].line} ({rows[i].data.name}): {exc.message}" for i, exc in failed.items()],
                          next(iter(failed.values())).kind)
        with transaction.atomic():
            hosts = [_register(actor, row.data, partial(_given, found[i])) for i, row in enumerate(rows)]
        target.detail.append(", ".join(host.name for host in hosts))
    return hosts


def _probe_all(rows: list[HostRow]) -> dict[int, Probe | VirtError]:
    """Each row's probe (or why it failed), at most PARALLEL_PROBES at a time, in row order."""
    def attempt(data: HostData) -> Probe | VirtError:
        try:
            return probe_host(data)
        except VirtError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=PARALLEL_PROBES, thread_name_prefix="probe") as pool:
        return dict(enumerate(pool.map(attempt, [row.data for row in rows])))


def _given(found: Probe | VirtError | None) -> Probe | None:
    assert not isinstance(found, VirtError)
    return found


def _raise(exc: VirtError) -> Probe:
    raise exc


def _listed(summary: str, problems: list[str], kind: str) -> VirtError:
    return VirtError(f"{summary}:\n" + "\n".join(problems), kind)


def delete_host(actor: Actor, host: Host) -> None:
    """Forget a host and its cached domains. Nothing on the host itself is touched."""
    with audited(actor, "host.delete", host):
        policy.require(actor.user, policy.DELETE, host)
        templates = list(host.templates.values_list("name", flat=True)[:5])
        if templates:
            raise VirtError(f"Templates live on {host.name} ({', '.join(templates)}); delete them before the host.",
                            errors.CONFLICT)
        manager.drop(host.target().key)
        manager.forget_key(host.target())
        with transaction.atomic():
            host.delete()


def watched(host: Host) -> bool:
    """Whether an event watcher holds the host now (its Redis lease): then `host.status` is current."""
    try:
        return bool(kv.client().exists(lease_key(settings.REDIS_PREFIX, host.pk)))
    except redis.RedisError:
        return False


def live_facts(host: Host) -> tuple[dict, VirtError | None]:
    """The host's facts read now (with a timeout); the last known ones and the error if it fails."""
    if host.status == Host.OFFLINE and watched(host):
        # The watcher holding the host keeps retrying it, and the page hears when it answers; asking
        # again here would only make the page wait out the same timeout.
        reason = f": {host.status_reason}" if host.status_reason else "."
        return host.facts, VirtError(f"Host {host.name} is offline{reason}", errors.UNREACHABLE)
    try:
        facts = call(host, hostinfo.host_facts)
    except VirtError as exc:
        return host.facts, exc
    now = timezone.now()
    Host.objects.filter(pk=host.pk).update(facts=facts, facts_updated=now)
    host.facts, host.facts_updated = facts, now
    return facts, None
