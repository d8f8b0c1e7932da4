"""Fixtures for the unit tier: cached domain rows, unique names, and a host that never answers.

Every name made here carries a random suffix, because the test driver behind test+unix:///default
is shared with anything else that talks to it while the suite runs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import libvirt
import pytest

from tests.conftest import domain_xml
from tests.people import unique
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

DEFAULT_POOL = "default-pool"


@pytest.fixture
def forget(test_conn: libvirt.virConnect) -> Iterator[Callable[[str], str]]:
    """Remember a domain name to remove from the test driver after the test (however it was made)."""
    names: list[str] = []
    yield lambda name: names.append(name) or name
    for name in names:
        try:
            dom = test_conn.lookupByName(name)
            persistent = dom.isPersistent()
            if dom.isActive():
                dom.destroy()  # A transient domain is gone after this.
            if persistent:
                dom.undefine()
        except libvirt.libvirtError:
            continue


@pytest.fixture
def domain_row(test_host, test_conn, forget) -> Callable[..., Domain]:  # type: ignore[no-untyped-def]
    """Define a domain on the test driver and return its row in the state cache.

    `disk` replaces the disk's source file (a volume's path, say); `start` starts it.
    """

    def make(prefix: str = "web", *, start: bool = False, disk: str = "", **kwargs) -> Domain:  # type: ignore[no-untyped-def]
        name = forget(unique(prefix))
        xml = domain_xml(name, **kwargs)
        if disk:
            xml = xml.replace(f"/guest/{name}.img", disk)
        dom = test_conn.defineXML(xml)
        if start:
            dom.create()
        sync_host(test_host)
        return Domain.objects.get(host=test_host, uuid=dom.UUIDString())

    return make


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    # Closing the sockets ends the libvirt threads still waiting on them.
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.fixture
def hung_host(db, hung_port) -> Iterator[Host]:  # type: ignore[no-untyped-def]
    """A registered host whose libvirtd has stopped answering."""
    host = Host.objects.create(name=unique("hung"), uri=f"qemu+tcp://127.0.0.1:{hung_port}/system",
                               status=Host.ONLINE)
    yield host
    manager.drop(host.target().key)


@pytest.fixture
def pool_volume(test_conn: libvirt.virConnect) -> Iterator[Callable[[str], libvirt.virStorageVol]]:
    """Create volumes in the test driver's default-pool; whatever is left is deleted afterwards."""
    pool = test_conn.storagePoolLookupByName(DEFAULT_POOL)
    names: list[str] = []

    def make(name: str) -> libvirt.virStorageVol:
        names.append(name)
        return pool.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>1</capacity></volume>", 0)

    yield make
    for name in names:
        try:
            pool.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError:
            pass
