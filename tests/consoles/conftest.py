"""Fixtures for console tests: a fake VNC server, test-driver domains whose VNC points at it, a
running tiny QEMU guest, WebSocket helpers, and a browser on the live (uvicorn) server.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Iterator

import libvirt
import pytest
import websockets

from tests import live
from tests.consoles.fakevnc import FakeVncServer


def vnc_domain_xml(name: str, port: int, password: str | None = None) -> str:
    passwd = f" passwd='{password}'" if password else ""
    return f"""<domain type='test'>
  <name>{name}</name><uuid>{uuidlib.uuid4()}</uuid>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='i686'>hvm</type></os>
  <devices><graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'{passwd}/></devices>
</domain>"""


@pytest.fixture
def fake_vnc() -> Iterator[FakeVncServer]:
    server = FakeVncServer()
    yield server
    server.close()


@pytest.fixture
def console_domains(test_conn, test_host) -> Iterator:  # type: ignore[no-untyped-def]
    """Define and start test-driver domains whose VNC server is a given port; their cache rows are returned."""
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host

    doms: list[libvirt.virDomain] = []

    def make(port: int, password: str | None = None) -> Domain:
        dom = test_conn.defineXML(vnc_domain_xml(f"console-{uuidlib.uuid4().hex[:8]}", port, password))
        dom.create()
        doms.append(dom)
        sync_host(test_host)
        return Domain.objects.get(host=test_host, uuid=dom.UUIDString())

    yield make
    for dom in doms:
        try:
            dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass


def ws_url(live_url: str, path: str) -> str:
    return live_url.replace("http://", "ws://") + path


async def ws_exchange(url: str, *, headers: dict[str, str] | None = None, origin: str | None = None,
                      send: bytes | None = None, expect: int = 0, timeout: float = live.RECV_TIMEOUT) -> bytes:
    """Open a console socket, optionally send bytes, and return what arrives (at least `expect` bytes)."""
    kwargs = {"additional_headers": headers or {}, "origin": origin, "open_timeout": timeout}
    async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        if send is not None:
            await ws.send(send)
        data = b""
        async with asyncio.timeout(timeout):
            while len(data) < expect:
                message = await live.recv(ws)
                data += message if isinstance(message, bytes) else message.encode()
        return data


def refused(url: str, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    """True when the server refuses the WebSocket handshake (HTTP 403): nothing was opened."""
    try:
        run(ws_exchange(url, **kwargs))
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code == 403
    return False


QEMU_URI = "qemu:///system"
BOOT_TIMEOUT = 60.0
VNC_PASSWORD = "noleak12"


@pytest.fixture(scope="session")
def tiny_guest() -> Iterator[libvirt.virDomain]:
    """One running tiny guest (emulated, VNC on 127.0.0.1, serial on a pty) for every console test."""
    import os
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from tests.guest.guest import READY_MARKER, ensure_image, make_overlay, tiny_domain_xml

    conn = libvirt.open(QEMU_URI)
    folder = Path(tempfile.mkdtemp(prefix="webvirt-console-"))
    os.chmod(folder, 0o755)
    name = f"webvirt-console-{uuidlib.uuid4().hex[:8]}"
    overlay = make_overlay(ensure_image(), folder / f"{name}.qcow2")
    log = folder / "serial.log"
    xml = tiny_domain_xml(name, str(overlay), serial_log=str(log))
    # A VNC password (QEMU only accepts one set at start): the console must work without it reaching the browser.
    xml = xml.replace("<graphics type='vnc' ", f"<graphics type='vnc' passwd='{VNC_PASSWORD}' ", 1)
    dom = conn.createXML(xml, 0)  # transient
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while READY_MARKER not in (log.read_text(errors="replace") if log.exists() else ""):
            assert time.monotonic() < deadline, f"the tiny guest did not boot in {BOOT_TIMEOUT:g} s"
            time.sleep(0.2)
        yield dom
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def qemu_domain(db, tiny_guest):  # type: ignore[no-untyped-def]
    """The running tiny guest as webvirt sees it: qemu:///system registered as a host, the guest's cache row."""
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host
    from webvirt.hosts.connections import manager
    from webvirt.hosts.models import Host

    host = Host.objects.create(name="local qemu", uri=QEMU_URI, status=Host.ONLINE)
    sync_host(host)
    yield Domain.objects.select_related("host").get(host=host, uuid=tiny_guest.UUIDString())
    manager.drop(host.target().key)


def run(coro):  # type: ignore[no-untyped-def]
    """asyncio.run in a thread of its own: the session's sync Playwright keeps a loop running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
