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

from tests.browser.conftest import browser  # noqa: F401  (the session's Chromium, reused here)
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
                      send: bytes | None = None, expect: int = 0, timeout: float = 5) -> bytes:
    """Open a console socket, optionally send bytes, and return what arrives (at least `expect` bytes)."""
    kwargs = {"additional_headers": headers or {}, "origin": origin, "open_timeout": timeout}
    async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        if send is not None:
            await ws.send(send)
        data = b""
        async with asyncio.timeout(timeout):
            while len(data) < expect:
                message = await ws.recv()
                data += message if isinstance(message, bytes) else message.encode()
        return data


def refused(url: str, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    """True when the server refuses the WebSocket handshake (HTTP 403): nothing was opened."""
    try:
        asyncio.run(ws_exchange(url, **kwargs))
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code == 403
    return False
