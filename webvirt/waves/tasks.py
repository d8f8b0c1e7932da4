"""Celery tasks: thin shells around webvirt.waves.services."""

from __future__ import annotations

from celery import shared_task

from webvirt.waves import services


@shared_task(name="webvirt.waves.tick")
def tick() -> dict[str, list[int]]:
    return services.tick()
