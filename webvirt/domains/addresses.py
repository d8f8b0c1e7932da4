"""A domain's IP addresses, read from its host (DHCP leases, guest agent, ARP) into the domain's cached row.

The domain page reads one domain's now; the periodic task (webvirt.domains.tasks) and a network's
leases page refresh every domain of a host from its networks' leases, so the list shows them too.
"""

from __future__ import annotations

from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.virt import addresses as virt_addresses
from webvirt.virt.errors import VirtError

SLOW = 30.0  # reading every network's leases on a host


def _store_addresses(row: Domain, found: list[dict]) -> bool:
    """Write a domain's addresses into the cache; True (and an event) when they changed."""
    now = timezone.now()
    changed = found != row.addresses
    Domain.objects.filter(pk=row.pk).update(addresses=found, addresses_updated=now)
    row.addresses, row.addresses_updated = found, now
    if changed:
        from webvirt.events.publish import domain_message, publish

        publish(domain_message(row))
    return changed


def refresh_addresses(actor: Actor, domain: Domain) -> list[dict]:
    """Read the domain's addresses now (leases, guest agent, ARP) into the cache; the cached ones on failure."""
    policy.require(actor.user, policy.VIEW, domain)
    try:
        found = call(domain.host, lambda conn: virt_addresses.domain_addresses(conn, domain.uuid))
    except VirtError:
        return domain.addresses
    _store_addresses(domain, found)
    return found


def refresh_host_addresses(host: Host) -> int:
    """Re-read every active network's leases on `host` into its domains' cached addresses.

    Addresses the guest agent or ARP reported stay until the domain's page reads them again.
    Returns how many domains changed.
    """
    try:
        by_uuid = call(host, virt_addresses.lease_addresses, SLOW)
    except VirtError:
        return 0
    changed = 0
    for row in Domain.objects.filter(host=host).select_related("host"):
        merged: dict[str, dict] = {}
        if row.state == "running":  # what the agent or ARP said holds while the domain runs
            for entry in row.addresses:
                rest = [s for s in entry.get("sources", []) if s != virt_addresses.LEASE]
                if rest:
                    merged[entry["ip"]] = {**entry, "sources": rest}
        for entry in by_uuid.get(row.uuid, []):
            if entry["ip"] in merged:
                merged[entry["ip"]]["sources"] = [virt_addresses.LEASE, *merged[entry["ip"]]["sources"]]
            else:
                merged[entry["ip"]] = entry
        found = sorted(merged.values(), key=lambda e: (e["family"], e["ip"]))
        if found != row.addresses:
            _store_addresses(row, found)
            changed += 1
    return changed


def refresh_all_addresses() -> int:
    """The periodic lease refresh: every online host's leases into the cache."""
    return sum(refresh_host_addresses(host) for host in Host.objects.exclude(status=Host.OFFLINE))
