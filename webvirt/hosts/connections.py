"""This process's connection manager, and the one way every caller reaches a host through it.

`call` (a request, a task, a service) and `connect` (a job's own connection for many calls) keep
the host's online/offline status true whatever the caller: a host that stops answering is marked
offline by the first caller to notice, and online again by the first call that works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt
from django.conf import settings

from webvirt.hosts.models import Host
from webvirt.virt import errors
from webvirt.virt.connection import ConnectionManager
from webvirt.virt.errors import VirtError

T = TypeVar("T")

# Failures that mean "the host is not there", as opposed to "that request was wrong".
OFFLINE_KINDS = {errors.UNREACHABLE, errors.REFUSED, errors.TIMEOUT, errors.AUTH}

manager = ConnectionManager(
    open_timeout=settings.WEBVIRT_LIBVIRT_TIMEOUT,
    call_timeout=settings.WEBVIRT_LIBVIRT_TIMEOUT,
    key_dir=settings.STATE_DIR / "keys",
)


def call(host: Host, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    """Run `fn(conn)` on `host` with the manager's timeouts."""
    try:
        result = manager.call(host.target(), fn, timeout)
    except VirtError as exc:
        _failed(host, exc)
        raise
    if host.status != Host.ONLINE:
        host.record_status(True)
    return result


def connect(host: Host) -> libvirt.virConnect:
    """The host's cached connection, for a job that makes many calls of its own (in worker threads)."""
    try:
        return manager.get(host.target())
    except VirtError as exc:
        _failed(host, exc)
        raise


def _failed(host: Host, exc: VirtError) -> None:
    if exc.kind in OFFLINE_KINDS:
        host.record_status(False, exc.message)
