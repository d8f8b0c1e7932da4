"""Celery tasks: thin shells around webvirt.networks.services."""

from __future__ import annotations

from celery import shared_task

from webvirt.networks import services


@shared_task(name="webvirt.networks.refresh_addresses")
def refresh_addresses() -> int:
    """Read every host's DHCP leases into its domains' cached addresses (the list shows them)."""
    return services.refresh_all_addresses()
