"""Every kind of job in one table: the function that runs it, and the one that starts it again.

Names, not imports: the jobs app sits below the apps whose work it runs, so it reads this table
when a job runs or is retried, never at import time (nothing is registered as a side effect).
A new kind of job is one line here, a `run_<kind>(ctx)` in its app's jobs.py and, if it can be
run again, a `retry_<kind>(actor, params)` in its app's services.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

# kind -> (runner, retrier or None: the job cannot be run again)
KINDS: dict[str, tuple[str, str | None]] = {
    "clone": ("webvirt.catalog.jobs.run_clone", "webvirt.catalog.services.retry_clone"),
    # virt-sysprep on a new template's disks; it ends sealed or not, and the template is usable either way.
    "seal": ("webvirt.catalog.jobs.run_seal", None),
    # A warm pool's refill: the beat or the next hand-out starts a new one for what is still missing.
    "warm_refill": ("webvirt.catalog.jobs.run_warm_refill", None),
    "install": ("webvirt.install.jobs.run_install", "webvirt.install.services.retry_install"),
    # The uploaded file is deleted when its job ends: there is nothing to upload again.
    "upload": ("webvirt.install.jobs.run_upload", None),
    # A snapshot operation is decided against the domain as it was: ask again rather than repeat it.
    "snapshot_create": ("webvirt.snapshots.jobs.run_snapshot_create", None),
    "snapshot_revert": ("webvirt.snapshots.jobs.run_snapshot_revert", None),
    "snapshot_delete": ("webvirt.snapshots.jobs.run_snapshot_delete", None),
    "snapshot_reset": ("webvirt.snapshots.jobs.run_snapshot_reset", None),
    # Checked against both hosts as they are: a failed or cancelled move is asked for again, not repeated.
    "migrate": ("webvirt.migration.jobs.run_migrate", None),
    "evacuate": ("webvirt.migration.jobs.run_evacuate", None),
    # One action on many domains, each checked as it is reached: ask again rather than repeat it.
    "bulk": ("webvirt.domains.jobs.run_bulk", None),
    "volume_clone": ("webvirt.storage.jobs.run_volume_clone", "webvirt.storage.services.retry_volume_clone"),
    "volume_download": ("webvirt.storage.jobs.run_volume_download",
                        "webvirt.storage.services.retry_volume_download"),
}


@cache
def runner(kind: str) -> Callable[..., Any] | None:
    """The function that runs a job of `kind` (taking a JobContext), or None for an unknown kind."""
    entry = KINDS.get(kind)
    return import_string(entry[0]) if entry else None


@cache
def retrier(kind: str) -> Callable[..., Any] | None:
    """The function that starts a job of `kind` again from its params, or None if it cannot be."""
    entry = KINDS.get(kind)
    return import_string(entry[1]) if entry and entry[1] else None
