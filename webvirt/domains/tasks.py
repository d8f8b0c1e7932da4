"""Celery tasks: thin shells around webvirt.domains' services."""

from __future__ import annotations

from celery import shared_task

from webvirt.domains import addresses


@shared_task(name="webvirt.domains.refresh_addresses")
def refresh_addresses() -> int:
    """Read every host's DHCP leases into its domains' cached addresses (the list shows them)."""
    return addresses.refresh_all_addresses()
