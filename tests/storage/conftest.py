"""Fixtures for storage: pools and volumes that are removed afterwards, however the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from tests.integration.conftest import qemu_conn, qemu_host  # noqa: F401
from tests.unit.conftest import domain_row, forget  # noqa: F401

DEFAULT_POOL = "default-pool"


def remove_pools(conn: libvirt.virConnect, names: list[str]) -> None:
    for name in names:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            continue
        try:
            if pool.isActive():
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def pool_names(test_conn: libvirt.virConnect) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    remove_pools(test_conn, names)


@pytest.fixture
def default_pool(test_conn, test_host):  # type: ignore[no-untyped-def]
    """The test driver's dir pool; volumes named wvt-* in it are deleted after the test."""
    pool = test_conn.storagePoolLookupByName(DEFAULT_POOL)
    yield pool, f"{test_host.pk}:{pool.UUIDString()}"
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith("wvt-"):
            vol.delete(0)
