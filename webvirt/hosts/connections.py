"""This process's connection manager, configured from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt
from django.conf import settings

from webvirt.hosts.models import Host
from webvirt.virt.connection import ConnectionManager

T = TypeVar("T")

manager = ConnectionManager(
    open_timeout=settings.WEBVIRT_LIBVIRT_TIMEOUT,
    call_timeout=settings.WEBVIRT_LIBVIRT_TIMEOUT,
    key_dir=settings.STATE_DIR / "keys",
)


def call(host: Host, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
    """Run `fn(conn)` on `host` with the manager's timeouts."""
    return manager.call(host.target(), fn, timeout)
