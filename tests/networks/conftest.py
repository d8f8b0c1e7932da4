"""Fixtures for networks: names that are removed from the host afterwards, however the test ends.

Real networks (qemu:///system) use private ranges under 10.213.0.0/16, which do not overlap the
host's `default` network (192.168.122.0/24). Nothing ever sends traffic to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import libvirt
import pytest

from tests.integration.conftest import qemu_conn, qemu_host  # noqa: F401
from tests.people import unique
from tests.unit.conftest import domain_row, forget  # noqa: F401


def remove_networks(conn: libvirt.virConnect, names: list[str]) -> None:
    for name in names:
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError:
            continue
        try:
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def network_names(test_conn: libvirt.virConnect) -> Iterator[Callable[[str], str]]:
    """A fresh network name on the test driver; the network is removed after the test."""
    names: list[str] = []
    yield lambda prefix="wvt": names.append(unique(prefix)) or names[-1]
    remove_networks(test_conn, names)
