"""The console WebSocket endpoints: `/ws/console/vnc/<id>/` (a VNC proxy) and `/ws/console/serial/<id>/`.

They are plain ASGI applications, not Channels consumers: after one thread hop to redeem the ticket
and check the policy, every frame goes straight between uvicorn's `receive`/`send` and the VNC
socket or libvirt stream, with no channel layer and no per-frame sync hop (Channels' dispatch costs
~130 us per incoming frame), and each chunk from the VNC socket becomes one frame without being
copied on the way (streams.py). Backpressure holds both ways: the proxy reads from the VNC server only
as fast as the browser accepts (`send` waits while the client is slow) and reads from the browser
only as fast as the server takes it (`drain`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs

import libvirt
from channels.db import database_sync_to_async
from django.conf import settings

from webvirt import kv
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.consoles import services, streams, tunnel
from webvirt.domains.models import Domain
from webvirt.events.auth import header
from webvirt.hosts.connections import call
from webvirt.virt import console as virt_console
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

log = logging.getLogger(__name__)

PATH = re.compile(r"^/ws/console/(?P<kind>vnc|serial)/(?P<id>\d+)/$")
REFUSED = 4403  # before the handshake completes uvicorn answers HTTP 403: nothing is opened
FAILED = 4409  # after the handshake: the console could not be reached; the reason is the close reason
CHUNK = 64 * 1024  # what one read from the SSH tunnel's pipe takes (sockets hand on what arrived)
# How much may wait for the browser before the proxy stops reading from the VNC server: a few
# frames, so the next one is ready when the browser takes one, yet bounded (backpressure).
BUFFER = 4 * CHUNK

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ConsoleRouter:
    """Sends `/ws/console/...` to the console endpoints and every other WebSocket to Channels."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.match(scope.get("path", ""))
        if match is None:
            return await self.fallback(scope, receive, send)
        endpoint = vnc_console if match["kind"] == "vnc" else serial_console
        return await endpoint(scope, receive, send, int(match["id"]))


# Opening: ticket, policy, audit ------------------------------------------------------------------

def _binding(scope: Scope) -> str:
    authorization = header(scope, b"authorization") or ""
    if authorization.lower().startswith("token "):
        return services.binding(token_key=authorization[6:].strip())
    session = scope.get("session")
    return services.binding(session_key=getattr(session, "session_key", None) if session is not None else None)


def _redeem(scope: Scope, kind: str, domain_id: int) -> Domain:
    ticket = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket", [""])[0]
    actor = Actor.from_scope(scope)
    try:
        return services.redeem(ticket, actor.user, _binding(scope), kind, domain_id)
    except Denied as exc:
        domain = Domain.objects.filter(pk=domain_id).first()
        services.audit_open(actor, kind, domain, AuditEntry.REFUSED, exc.message)
        raise


async def _open(scope: Scope, receive: Receive, send: Send, kind: str, domain_id: int) -> Domain | None:
    """Wait for the handshake and redeem the ticket; refuse (HTTP 403) and return None when it fails."""
    event = await receive()
    if event["type"] != "websocket.connect":
        return None
    try:
        return await database_sync_to_async(_redeem)(scope, kind, domain_id)
    except Denied:
        await send({"type": "websocket.close", "code": REFUSED})
        return None


async def _accept(scope: Scope, send: Send) -> None:
    protocols = scope.get("subprotocols") or []
    message: dict[str, Any] = {"type": "websocket.accept"}
    if "binary" in protocols:
        message["subprotocol"] = "binary"
    await send(message)


async def _fail(send: Send, message: str) -> None:
    reason = message.encode()[:120].decode(errors="ignore")
    try:
        await send({"type": "websocket.close", "code": FAILED, "reason": reason})
    except Exception:  # the browser is already gone
        pass


audit = database_sync_to_async(services.audit_open)
audit_close = database_sync_to_async(services.audit_close)


# VNC ---------------------------------------------------------------------------------------------

class VncConnection(NamedTuple):
    stream: streams.Stream
    authenticated: bool  # the proxy answered the server's VNC authentication itself
    greeting: bytes  # what the server sent that was read already and the browser still needs


async def connect_vnc(domain: Domain) -> VncConnection:
    """A byte stream to the domain's VNC server: TCP, a libvirt-opened socket, or an SSH tunnel."""
    endpoint = await asyncio.to_thread(services.vnc_endpoint, domain)
    greeting = b""
    stream: streams.Stream
    if endpoint.kind == "fd":
        sock = await asyncio.to_thread(
            call, domain.host, lambda conn: virt_console.open_graphics_socket(conn, domain.uuid))
        stream = await streams.open_socket(sock, BUFFER)
    elif endpoint.kind == "ssh":
        reader, writer, greeting = await tunnel.open_ssh_tunnel(domain.host, endpoint)
        stream = streams.PipeStream(reader, writer, CHUNK)
    else:
        try:
            stream = await asyncio.wait_for(streams.open_tcp(endpoint.host, endpoint.port, BUFFER), 5)
        except (OSError, TimeoutError):
            raise VirtError(f"The VNC server of {domain.name} at {endpoint.host}:{endpoint.port} does not answer.",
                            errors.UNREACHABLE) from None
    if endpoint.password:
        # The proxy answers the server's VNC authentication itself, so the password never reaches the
        # browser; the browser is then offered "no authentication" (see tunnel.offer_no_auth).
        await tunnel.vnc_authenticate(stream, endpoint.password, greeting)
        return VncConnection(stream, True, b"")
    return VncConnection(stream, False, greeting)


async def vnc_console(scope: Scope, receive: Receive, send: Send, domain_id: int) -> None:
    domain = await _open(scope, receive, send, "vnc", domain_id)
    if domain is None:
        return
    actor = Actor.from_scope(scope)
    try:
        stream, authenticated, greeting = await connect_vnc(domain)
    except VirtError as exc:
        await audit(actor, "vnc", domain, AuditEntry.FAILED, exc.message)
        await _accept(scope, send)
        await _fail(send, exc.message)
        return
    await _accept(scope, send)
    await audit(actor, "vnc", domain, AuditEntry.OK, "opened")
    started = time.monotonic()
    if authenticated:
        leftover = await tunnel.offer_no_auth(receive, send)
        if leftover is None:
            stream.close()
            await audit_close(actor, "vnc", domain, started, 0, 0, "closed by the browser during the handshake")
            return
        stream.write(leftover)
    elif greeting:
        await send({"type": "websocket.send", "bytes": greeting})
    stats, reason = await pump(receive, send, stream)
    await audit_close(actor, "vnc", domain, started, stats[0], stats[1], reason)


async def pump(receive: Receive, send: Send,
               stream: streams.Stream) -> tuple[list[int], str]:
    """Carry bytes both ways until either side closes; return [to browser, from browser] and why it ended."""
    stats = [0, 0]

    async def from_browser() -> str:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return "closed by the browser"
            data = message.get("bytes") or (message.get("text") or "").encode()
            stats[1] += len(data)
            stream.write(data)
            await stream.drain()

    async def to_browser() -> str:
        while True:
            data = await stream.read()
            if not data:
                return "closed by the VNC server"
            stats[0] += len(data)
            await send({"type": "websocket.send", "bytes": data})

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(to_browser())]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        stream.close()
    finished = next(iter(done))
    reason = finished.result() if not finished.cancelled() and finished.exception() is None else (
        f"connection lost ({finished.exception()})")
    if finished is tasks[1]:
        await _close(send, 1000, "The VNC server closed the connection.")
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats, reason


async def _close(send: Send, code: int, reason: str) -> None:
    try:
        await send({"type": "websocket.close", "code": code, "reason": reason})
    except Exception:
        pass


# Serial ------------------------------------------------------------------------------------------

def _holder_key(domain_id: int) -> str:
    return f"{settings.REDIS_PREFIX}:serial-holder:{domain_id}"


def _taken_key(session_id: str) -> str:
    return f"{settings.REDIS_PREFIX}:serial-taken:{session_id}"


def _holder(domain_id: int) -> dict[str, str]:
    raw = kv.client().get(_holder_key(domain_id))
    return json.loads(raw) if raw else {}


class SerialSession:
    """One browser's serial console: a libvirt stream whose callbacks (on libvirt's event thread) feed a queue."""

    def __init__(self, domain: Domain, actor: Actor) -> None:
        self.domain = domain
        self.actor = actor
        self.id = uuidlib.uuid4().hex
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.stream: libvirt.virStream | None = None

    async def open(self, force: bool) -> None:
        if force:
            holder = await asyncio.to_thread(_holder, self.domain.pk)
            if holder.get("id"):
                await asyncio.to_thread(kv.client().set, _taken_key(holder["id"]),
                                        self.actor.user.get_username(), ex=60)
        stream = await asyncio.to_thread(
            call, self.domain.host, lambda conn: virt_console.open_serial(conn, self.domain.uuid, force))
        self.stream = stream
        await asyncio.to_thread(kv.client().set, _holder_key(self.domain.pk),
                                json.dumps({"id": self.id, "user": self.actor.user.get_username()}), ex=86400)
        events = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        stream.eventAddCallback(events, self._readable, None)

    def _readable(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        # Runs on libvirt's event thread: read what is there and hand it to the asyncio loop.
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            while True:
                try:
                    data = stream.recv(65536)
                except libvirt.libvirtError:
                    data = b""
                if data == -2:
                    return
                self.loop.call_soon_threadsafe(self.queue.put_nowait, data or None)
                if not data:
                    stream.eventRemoveCallback()
                    return
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            stream.eventRemoveCallback()
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)

    async def write(self, data: bytes) -> None:
        assert self.stream is not None
        while data:
            sent = self.stream.send(data)
            if sent == -2:
                await asyncio.sleep(0.01)
                continue
            data = data[sent:]

    def close(self) -> str | None:
        """Finish the stream; return who took the console over, if that is why it ended."""
        if self.stream is not None:
            try:
                self.stream.eventRemoveCallback()
            except libvirt.libvirtError:
                pass
            try:
                self.stream.abort()
            except libvirt.libvirtError:
                pass
        client = kv.client()
        if _holder(self.domain.pk).get("id") == self.id:
            client.delete(_holder_key(self.domain.pk))
        taken_by = cast("bytes | None", client.getdel(_taken_key(self.id)))  # the client does not decode replies
        return taken_by.decode() if taken_by else None


async def _send_json(send: Send, data: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "text": json.dumps(data)})


async def serial_console(scope: Scope, receive: Receive, send: Send, domain_id: int) -> None:
    domain = await _open(scope, receive, send, "serial", domain_id)
    if domain is None:
        return
    actor = Actor.from_scope(scope)
    await _accept(scope, send)
    session = SerialSession(domain, actor)
    force = False
    while True:
        try:
            await session.open(force)
            break
        except VirtError as exc:
            if exc.kind != errors.CONFLICT:
                await audit(actor, "serial", domain, AuditEntry.FAILED, exc.message)
                await _fail(send, exc.message)
                return
            holder = await asyncio.to_thread(_holder, domain.pk)
            await _send_json(send, {"type": "busy", "holder": holder.get("user", ""), "message": exc.message})
            if not await _wait_for_takeover(receive):
                return
            force = True
    await audit(actor, "serial", domain, AuditEntry.OK, "took over the console" if force else "opened")
    await _send_json(send, {"type": "ready"})
    started = time.monotonic()
    stats = [0, 0]
    reason = await _serial_pump(receive, send, session, stats)
    taken_by = await asyncio.to_thread(session.close)
    if taken_by:
        reason = f"taken over by {taken_by}"
        await _send_json(send, {"type": "taken", "by": taken_by})
    if reason != "closed by the browser":
        await _close(send, 1000, reason)
    await audit_close(actor, "serial", domain, started, stats[0], stats[1], reason)


async def _wait_for_takeover(receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return False
        if message.get("text") and _control(message["text"]) == "takeover":
            return True


def _control(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    return data.get("type", "") if isinstance(data, dict) else ""


async def _serial_pump(receive: Receive, send: Send, session: SerialSession, stats: list[int]) -> str:
    async def from_browser() -> str:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return "closed by the browser"
            data = message.get("bytes")
            if data is None:
                continue  # text frames are control messages; none is needed once open
            stats[1] += len(data)
            await session.write(data)

    async def to_browser() -> str:
        while True:
            data = await session.queue.get()
            if data is None:
                return "the console stream ended"
            stats[0] += len(data)
            await send({"type": "websocket.send", "bytes": data})

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(to_browser())]
    done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    finished = next(iter(done))
    if finished.cancelled() or finished.exception() is not None:
        return f"connection lost ({finished.exception()})"
    return finished.result()
