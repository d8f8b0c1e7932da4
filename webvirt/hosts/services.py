"""Everything done to hosts, shared by the HTML views, the API and tasks."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
from webvirt.virt import errors, hostinfo
from webvirt.virt.connection import Target, check_uri
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


def check_connection(data: HostData, host: Host | None = None) -> dict:
    """Open a fresh connection with the given settings and read the host's facts, or raise VirtError."""
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
        return hostinfo.host_facts(conn)
    finally:
        conn.close()


def _apply(host: Host, data: HostData, facts: dict) -> None:
    host.name, host.uri = data.name.strip(), data.uri.strip()
    host.description, host.username = data.description.strip(), data.username.strip()
    host.migration_uri = _migration_uri(data.migration_uri)
    if data.clear_credentials:
        host.password_encrypted = host.ssh_key_encrypted = ""
    if data.password:
        host.set_password(data.password)
    if data.ssh_key:
        host.set_ssh_key(data.ssh_key)
    now = timezone.now()
    host.facts, host.facts_updated = facts, now
    if host.status != Host.ONLINE:
        host.status, host.status_changed = Host.ONLINE, now
    host.status_reason = ""


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
    """Register a host after a successful test connection, then load its domains into the cache."""
    from webvirt.domains.services import sync_host

    with audited(actor, "host.create") as target:
        target.set(kind="host", text=data.name)
        policy.require(actor.user, policy.ADD, Host)
        _check_name(data, None)
        facts = check_connection(data)
        host = Host()
        _apply(host, data, facts)
        host.save()
        target.set(host)
    sync_host(host)
    return host


def update_host(actor: Actor, host: Host, data: HostData) -> Host:
    from webvirt.domains.services import sync_host

    with audited(actor, "host.update", host) as target:
        policy.require(actor.user, policy.CHANGE, host)
        _check_name(data, host)
        _require_credentials_again(host, data)
        facts = check_connection(data, host)
        old_uri = host.uri
        _apply(host, data, facts)
        host.save()
        manager.drop(host.target().key)
        target.detail.append(f"uri {old_uri} -> {host.uri}" if old_uri != host.uri else "settings changed")
    sync_host(host)
    return host


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
