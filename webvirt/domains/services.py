"""Everything done to domains, shared by the HTML views, the API and tasks.

Each function checks policy, calls libvirt through the connection manager (with a timeout),
updates the state cache from libvirt's answer and records the outcome in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors
from webvirt.virt.domains import DomainState
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError

CACHED_FIELDS = ("name", "state", "reason", "vcpus", "memory_mib", "autostart", "persistent", "graphics")
SYNC_TIMEOUT = 30.0


# The state cache -------------------------------------------------------------------------------

def store_state(host: Host, snap: DomainState) -> Domain:
    """Write one domain's state into the cache and return its row."""
    row = Domain.objects.filter(host=host, uuid=snap.uuid).first() or _migrating(host, snap)
    if row is not None and row.host_id != host.pk:
        return row  # seen on the other end of a migration: the row stays where it is
    if row is None:
        row = Domain(host=host, uuid=snap.uuid, state_changed=timezone.now())
        for name in CACHED_FIELDS:
            setattr(row, name, getattr(snap, name))
        try:
            with transaction.atomic():
                row.save()
            return row
        except IntegrityError:
            # The watcher stored it first, from libvirt's event (a clone job and the watcher race
            # for every new domain): update that row instead.
            row = Domain.objects.get(host=host, uuid=snap.uuid)
    if row.state != snap.state:
        row.state_changed = timezone.now()
    for name in CACHED_FIELDS:
        setattr(row, name, getattr(snap, name))
    # Only what libvirt says: ownership and expiry, written by other processes, stay untouched.
    row.save(update_fields=[*CACHED_FIELDS, "state_changed", "updated"])
    return row


def _migrating(host: Host, snap: DomainState) -> Domain | None:
    """The row of a domain a migration is moving, seen on `host` (its source or its destination).

    The row follows the domain to the destination once it runs there (an incoming domain waits paused
    until the memory has moved; a cancelled one never runs there), so its id, owner and history stay.
    """
    row = Domain.objects.select_related("host").filter(uuid=snap.uuid, migrating_to__isnull=False).first()
    if row is None:
        return None
    arrived = snap.state not in ("paused", "shutoff", "nostate") or row.state == "shutoff"
    if row.migrating_to_id == host.pk and row.host_id != host.pk and arrived:
        row.host = host
        Domain.objects.filter(pk=row.pk).update(host=host)
    return row


@dataclass
class SyncResult:
    """What a resynchronisation changed in the cache, so the changes can be published."""

    created: list[Domain] = field(default_factory=list)
    updated: list[Domain] = field(default_factory=list)
    removed: list[Domain] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"created": len(self.created), "updated": len(self.updated), "removed": len(self.removed)}


@transaction.atomic
def reconcile(host: Host, snaps: list[DomainState], listed_at: datetime | None = None) -> SyncResult:
    """Make the cache for `host` match what libvirt listed: add, update and remove rows.

    A row written after `listed_at` (when libvirt was asked) is kept even if the list lacks it: a
    worker defined that domain in the meantime, and removing it would lose its owner and expiry.
    """
    now = timezone.now()
    existing = {row.uuid: row for row in Domain.objects.filter(host=host)}
    seen = {snap.uuid: snap for snap in snaps}
    result = SyncResult()
    moving = set(Domain.objects.filter(migrating_to__isnull=False).values_list("uuid", flat=True))
    for uuid, snap in seen.items():
        row = existing.get(uuid)
        if row is None and uuid in moving:
            continue  # the migration job, or the domain's first events on this host, move its row here
        if row is None:
            result.created.append(Domain(host=host, uuid=uuid, state_changed=now,
                                         **{f: getattr(snap, f) for f in CACHED_FIELDS}))
        elif any(getattr(row, f) != getattr(snap, f) for f in CACHED_FIELDS):
            if row.state != snap.state:
                row.state_changed = now
            for name in CACHED_FIELDS:
                setattr(row, name, getattr(snap, name))
            row.updated = now
            result.updated.append(row)
    # A job (a clone being defined) may store one of these rows after the read above: its row is the
    # newer and keeps its owner, so a conflicting insert is skipped, and the ids are read back after.
    Domain.objects.bulk_create(result.created, batch_size=500, ignore_conflicts=True)
    if result.created:
        ids = dict(Domain.objects.filter(host=host, uuid__in=[row.uuid for row in result.created])
                   .values_list("uuid", "pk"))
        for row in result.created:
            row.pk = ids.get(row.uuid)
        result.created = [row for row in result.created if row.pk is not None]  # removed meanwhile
    Domain.objects.bulk_update(result.updated, [*CACHED_FIELDS, "state_changed", "updated"], batch_size=500)
    result.removed = [row for uuid, row in existing.items() if uuid not in seen and row.migrating_to_id is None
                      and (listed_at is None or row.updated < listed_at)]
    Domain.objects.filter(pk__in=[row.pk for row in result.removed]).delete()
    return result


def sync_host(host: Host) -> SyncResult | None:
    """Re-read every domain of `host` into the cache; None when the host does not answer."""
    listed_at = timezone.now()
    try:
        snaps = call(host, virt_domains.list_states, SYNC_TIMEOUT)
    except VirtError:
        return None
    return reconcile(host, snaps, listed_at)


def state_counts(domains: QuerySet[Domain]) -> dict[str, int]:
    """How many of `domains` are in each state (the caller has already applied the policy)."""
    return dict(domains.order_by().values_list("state").annotate(n=Count("id")))


def state_counts_by_host(host_ids: list[int]) -> dict[int, dict[str, int]]:
    """state_counts of each host's domains, for a page of hosts, in one query."""
    counts: dict[int, dict[str, int]] = {pk: {} for pk in host_ids}
    rows = (Domain.objects.filter(host_id__in=host_ids).order_by()
            .values_list("host_id", "state").annotate(n=Count("id")))
    for host_id, state, n in rows:
        counts[host_id][state] = n
    return counts


# Actions ---------------------------------------------------------------------------------------

def run_action(actor: Actor, domain: Domain, action: str) -> Domain:
    """Start, shut down, reboot, suspend, resume, force off or reset a domain."""
    with audited(actor, f"domain.{action}", domain):
        policy.require(actor.user, policy.OPERATE, domain)
        if action == "start" and domain.is_template:
            raise VirtError(f"{domain.name} is a template: its disks are the read-only bases of its clones, so it "
                            "is never started. Clone it instead.", errors.STATE)
        snap = call(domain.host, lambda conn: virt_domains.run_action(conn, domain.uuid, action))
        return store_state(domain.host, snap)


def set_autostart(actor: Actor, domain: Domain, enabled: bool) -> Domain:
    with audited(actor, "domain.autostart_on" if enabled else "domain.autostart_off", domain):
        policy.require(actor.user, policy.CHANGE, domain)
        snap = call(domain.host, lambda conn: virt_domains.set_autostart(conn, domain.uuid, enabled))
        return store_state(domain.host, snap)


def undefine(actor: Actor, domain: Domain, delete_volumes: bool = False) -> list[str]:
    """Remove a domain from its host (and, if asked, the volumes its disks use)."""
    with audited(actor, "domain.undefine", domain) as target:
        policy.require(actor.user, policy.DELETE, domain)
        _refuse_template(domain)
        if not delete_volumes and not policy.is_admin(actor.user):
            # Disks left behind would be nobody's, yet use the host's storage outside every quota.
            raise policy.Denied(f"Only an administrator can undefine {domain.name} and keep its disks; "
                                "delete it with its disks instead.")
        keep = template_bases(domain)
        deleted = call(domain.host, lambda conn: virt_domains.undefine(conn, domain.uuid, delete_volumes, keep))
        target.detail.append(f"deleted volumes: {', '.join(deleted)}" if deleted else "no volumes deleted")
        domain.delete()
        return deleted


def remove(actor: Actor, domain: Domain, reason: str = "") -> list[str]:
    """Force off, undefine and delete the volumes of a domain (an owner's delete, or expiry).

    A system actor (no user: the expiry task) is not subject to the policy; everyone else is.
    """
    with audited(actor, "domain.remove", domain) as target:
        if actor.user is not None:
            policy.require(actor.user, policy.DELETE, domain)
        _refuse_template(domain)
        keep = template_bases(domain)
        deleted = call(domain.host, lambda conn: virt_domains.remove(conn, domain.uuid, keep=keep), timeout=60)
        target.detail.append(f"{reason + '; ' if reason else ''}deleted volumes: {', '.join(deleted) or 'none'}")
        Domain.objects.filter(pk=domain.pk).delete()
        return deleted


def template_bases(domain: Domain) -> frozenset[str]:
    """Files never deleted with a domain: the templates' base disks on its host (its snapshots' files go)."""
    from webvirt.catalog.models import Template

    return frozenset(Template.base_paths(domain.host_id))


def _refuse_template(domain: Domain) -> None:
    """A template's domain holds the base disks of its clones: it stays while the template does."""
    from webvirt.catalog.models import Template

    if domain.is_template or Template.objects.filter(host_id=domain.host_id, source_uuid=domain.uuid).exists():
        raise VirtError(f"{domain.name} is a template; its disks are the bases of its clones. Delete the template "
                        "first.", errors.STATE)


# XML -------------------------------------------------------------------------------------------

def get_xml(actor: Actor, domain: Domain, inactive: bool = False) -> str:
    policy.require(actor.user, policy.VIEW, domain)
    return call(domain.host, lambda conn: virt_domains.domain_xml(conn, domain.uuid, inactive))


def update_xml(actor: Actor, domain: Domain, xml: str) -> Domain:
    """Replace a domain's persistent definition; libvirt validates it first, a rejection changes nothing."""
    with audited(actor, "domain.edit_xml", domain):
        policy.require(actor.user, policy.CHANGE, domain)
        snap = call(domain.host, lambda conn: virt_domains.redefine(conn, domain.uuid, xml))
        return store_state(domain.host, snap)


def define(actor: Actor, host: Host, xml: str, transient: bool = False) -> Domain:
    """Define a persistent domain, or create (start) a transient one, from XML."""
    with audited(actor, "domain.create" if transient else "domain.define") as target:
        name = _xml_name(xml)
        target.set(kind="domain", text=f"{name} on {host.name}")
        policy.require(actor.user, policy.VIEW, host)
        policy.require(actor.user, policy.ADD, Domain)
        snap = call(host, lambda conn: virt_domains.define(conn, xml, transient))
        row = store_state(host, snap)
        target.set(row)
        return row


def _xml_name(xml: str) -> str:
    try:
        return DomainXML.from_string(xml).name or ""
    except VirtError:
        return ""


@dataclass
class Details:
    """What the domain page shows beyond the cache: the parsed live XML, or why it could not be read."""

    xml: str = ""
    doc: DomainXML | None = None
    error: VirtError | None = None


def details(actor: Actor, domain: Domain) -> Details:
    policy.require(actor.user, policy.VIEW, domain)
    try:
        xml = call(domain.host, lambda conn: virt_domains.domain_xml(conn, domain.uuid))
    except VirtError as exc:
        if exc.kind == errors.NOT_FOUND:
            sync_host(domain.host)
        return Details(error=exc)
    return Details(xml=xml, doc=DomainXML.from_string(xml))
