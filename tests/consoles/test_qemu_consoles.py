"""Consoles of a real running guest (tiny image, QEMU emulation) through the real web server.

VNC through TCP and through a libvirt-opened socket (where the domain has a password, which never
reaches the browser); the serial console answering `echo hello`; a second viewer told the console is
taken, taking it over, and the first told so; a screenshot that shows the guest's screen.
"""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
import websockets
from lxml import etree

from tests import live
from tests.consoles.conftest import VNC_PASSWORD, run, ws_url

pytestmark = pytest.mark.qemu


def token_header(api) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": api._credentials["HTTP_AUTHORIZATION"]}


def console_url(api, live_stack, domain, kind: str) -> str:  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/domains/{domain.pk}/console/", {"kind": kind}, format="json")
    assert response.status_code == 201, response.json()
    return ws_url(live_stack.url, response.json()["path"])


async def rfb_security_types(url: str, headers: dict[str, str]) -> bytes:
    async with websockets.connect(url, additional_headers=headers, subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        assert (await live.recv(ws)).startswith(b"RFB 003.008")
        await ws.send(b"RFB 003.008\n")
        data = await live.recv(ws)
        return data[1:1 + data[0]]


async def direct_security_types(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readexactly(12)).startswith(b"RFB 003.")
    writer.write(b"RFB 003.008\n")
    count = (await reader.readexactly(1))[0]
    types = await reader.readexactly(count)
    writer.close()
    return types


@pytest.mark.django_db(transaction=True)
def test_the_vnc_console_opens_without_the_guests_password_reaching_the_browser(  # type: ignore[no-untyped-def]
        live_stack, api, admin_client, qemu_domain, tiny_guest):
    graphics = etree.fromstring(tiny_guest.XMLDesc(0).encode()).find("./devices/graphics")
    assert "passwd" not in graphics.attrib  # libvirt itself never shows it without the secure flag
    # Straight to QEMU's port, the VNC server wants its password (security type 2)...
    assert run(direct_security_types(int(graphics.get("port")))) == b"\x02"
    # ...through webvirt the browser is offered no authentication: libvirt opened the socket with SKIPAUTH.
    url = console_url(api, live_stack, qemu_domain, "vnc")
    assert run(rfb_security_types(url, token_header(api))) == b"\x01"
    page = admin_client.get(f"/consoles/{qemu_domain.pk}/vnc/")
    assert page.status_code == 200
    assert VNC_PASSWORD.encode() not in page.content


async def serial_session(url: str, headers: dict[str, str]) -> websockets.ClientConnection:
    ws = await websockets.connect(url, additional_headers=headers)
    return ws


async def read_until(ws, text: bytes, timeout: float = 15) -> bytes:  # type: ignore[no-untyped-def]
    seen = b""
    async with asyncio.timeout(timeout):
        while text not in seen:
            message = await live.recv(ws)
            seen += message if isinstance(message, bytes) else b""
    return seen


async def control(ws, timeout: float = 10) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            message = await live.recv(ws)
            if isinstance(message, str):
                return json.loads(message)


@pytest.mark.django_db(transaction=True)
def test_the_serial_console_answers_and_a_second_viewer_may_take_it_over(  # type: ignore[no-untyped-def]
        live_stack, api, qemu_domain):
    headers = token_header(api)

    async def ticket_url() -> str:
        # The API client uses the ORM, which refuses to run in an event loop's thread.
        return await asyncio.to_thread(console_url, api, live_stack, qemu_domain, "serial")

    async def scenario() -> None:
        first = await websockets.connect(await ticket_url(), additional_headers=headers)
        assert await control(first) == {"type": "ready"}
        await first.send(b"\recho hel''lo\r")
        await read_until(first, b"hello\r\n")

        second = await websockets.connect(await ticket_url(), additional_headers=headers)
        busy = await control(second)
        assert busy["type"] == "busy" and busy["holder"] == "alice"
        await second.send(json.dumps({"type": "takeover"}))
        assert await control(second) == {"type": "ready"}
        assert await control(first) == {"type": "taken", "by": "alice"}
        await second.send(b"echo w''orld\r")
        await read_until(second, b"world\r\n")
        await second.close()
        await first.close()

    run(scenario())


@pytest.mark.django_db(transaction=True)
def test_the_screenshot_of_a_running_guest_is_a_png_of_its_screen(admin_client, qemu_domain):  # type: ignore[no-untyped-def]
    response = admin_client.get(f"/consoles/{qemu_domain.pk}/screenshot.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    png = response.content
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 640 and height >= 400
    assert len(png) > 2000  # a uniform screen compresses to a few hundred bytes; text does not
