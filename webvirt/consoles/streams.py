"""The proxy's connection to a VNC server: an asyncio protocol that hands on the bytes objects the
event loop received, as they came.

asyncio's StreamReader copies every chunk twice more (into its buffer, then out of it); at console
speeds (a 64 KiB chunk every ~60 us) those copies were a quarter of the proxy's time. Here a chunk
goes from the socket to the WebSocket frame untouched. Backpressure: reading pauses while more than
`limit` bytes wait for the browser; writing waits (drain) while the server's socket is full.
"""

from __future__ import annotations

import asyncio
import collections
import socket


class VncStream(asyncio.Protocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # key presses go out at once

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > self.limit and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake("_readable")

    def eof_received(self) -> bool:
        self.eof = True
        self._wake("_readable")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake("_readable")
        self._wake("_writable")

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake("_writable")

    def _wake(self, name: str) -> None:
        waiter = getattr(self, name)
        if waiter is not None:
            setattr(self, name, None)
            if not waiter.done():
                waiter.set_result(None)

    # What the proxy uses -----------------------------------------------------------------------
    async def read(self) -> bytes:
        """The next chunk as received (b"" at the end of the stream)."""
        while not self.chunks:
            if self.eof:
                return b""
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered <= self.limit and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    async def readexactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await self.read()
            if not chunk:
                raise asyncio.IncompleteReadError(data, n)
            data += chunk
        if len(data) > n:
            self.chunks.appendleft(data[n:])
            self.buffered += len(data) - n
        return data[:n]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the VNC server closed the connection")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_tcp(host: str, port: int, limit: int) -> VncStream:
    loop = asyncio.get_running_loop()
    _transport, stream = await loop.create_connection(lambda: VncStream(limit), host, port)
    return stream


async def open_socket(sock: socket.socket, limit: int) -> VncStream:
    loop = asyncio.get_running_loop()
    _transport, stream = await loop.create_connection(lambda: VncStream(limit), sock=sock)
    return stream


class PipeStream:
    """The same interface over a subprocess's pipes (the SSH tunnel's `ssh -W`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: int) -> None:
        self.reader, self.writer, self.chunk = reader, writer, chunk

    async def read(self) -> bytes:
        return await self.reader.read(self.chunk)

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


Stream = VncStream | PipeStream  # what the proxy reads the VNC server from and writes it to
