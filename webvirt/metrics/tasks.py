from __future__ import annotations

from celery import shared_task

from webvirt.metrics import store


@shared_task(name="webvirt.metrics.rollup")
def rollup() -> dict[str, int]:
    return store.rollup_and_prune()
