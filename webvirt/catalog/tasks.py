"""Celery tasks: thin shells around webvirt.catalog.services."""

from __future__ import annotations

from celery import shared_task

from webvirt.catalog import services


@shared_task(name="webvirt.catalog.expire")
def expire_clones() -> list[str]:
    return services.expire_due()


@shared_task(name="webvirt.catalog.warm_refill")
def refill_warm_pools() -> list[int]:
    from webvirt.catalog import warm

    return warm.refill_due()
