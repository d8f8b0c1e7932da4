"""Reaching a domain's consoles through libvirt: where its VNC server listens, its serial stream, screenshots.

No Django here: the web process's console endpoints and the benchmark call these with a connection.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import libvirt
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.domains import STATE_LABELS, lookup, state_name
from webvirt.virt.errors import VirtError
from webvirt.virt.streams import finished

ANY_ADDRESS = {"0.0.0.0", "::", "[::]", ""}
CONSOLE_STATES = {"running", "blocked", "paused"}


@dataclass(frozen=True)
class VncEndpoint:
    """How to reach a domain's VNC server: `tcp` (host, port), `fd` (a libvirt-opened socket) or `ssh`."""

    kind: str
    host: str = ""
    port: int = 0
    password: str = ""  # only set when the proxy must answer the server's VNC authentication itself
    ssh_target: str = ""  # user@host for `ssh`
    ssh_port: int = 0
    ssh_verify: bool = True  # False when the host's URI says no_verify=1, as libvirt's own ssh does


def is_local(uri: str) -> bool:
    """A URI without a host name talks to this machine's libvirtd (qemu:///system, qemu:///session)."""
    parts = urlsplit(uri)
    return not parts.hostname or parts.hostname in ("localhost", "127.0.0.1", "::1")


def _active(dom: libvirt.virDomain) -> None:
    state = state_name(dom.state()[0])
    if state not in CONSOLE_STATES:
        raise VirtError(f"{dom.name()} is {STATE_LABELS[state]}. Start it to use its console.", errors.STATE)


def vnc_endpoint(conn: libvirt.virConnect, uuid: str, uri: str) -> VncEndpoint:
    """Where the running domain's VNC server can be reached from this process."""
    dom = lookup(conn, uuid)
    _active(dom)
    try:
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    except libvirt.libvirtError:
        xml = dom.XMLDesc(0)  # a read-only connection may not read secrets; then there is no password to use
    node = etree.fromstring(xml.encode()).find("./devices/graphics[@type='vnc']")
    if node is None:
        raise VirtError(f"{dom.name()} has no VNC graphics. Add a <graphics type='vnc'/> device to use its "
                        "graphical console, or use its serial console.", errors.UNSUPPORTED)
    password = node.get("passwd") or ""
    port = int(node.get("port") or -1)
    listen = node.get("listen") or ""
    listen_node = node.find("./listen")
    if listen_node is not None and listen_node.get("address"):
        listen = listen_node.get("address") or ""
    has_tcp = port > 0 and (listen_node is None or listen_node.get("type") in (None, "address", "network"))
    parts = urlsplit(uri)
    if "ssh" in parts.scheme:
        # Through the host's SSH server even when it is this machine: the connection that reaches
        # libvirt is ssh's, so libvirt cannot hand out a socket, and ssh is what the admin allowed.
        if not has_tcp:
            raise VirtError(f"{dom.name()}'s VNC server has no TCP port, and libvirt only hands out its socket "
                            "to connections on the same machine.", errors.UNSUPPORTED)
        target = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname or ""
        remote = "127.0.0.1" if listen in ANY_ADDRESS else listen.strip("[]")
        return VncEndpoint("ssh", remote, port, password, ssh_target=target, ssh_port=parts.port or 0,
                           ssh_verify=parse_qs(parts.query).get("no_verify", ["0"])[0] != "1")
    if is_local(uri):
        if (password or not has_tcp) and conn.getType() == "QEMU":
            # libvirt hands us a connected socket and tells QEMU to skip the password for it.
            return VncEndpoint("fd")
        if not has_tcp:
            raise VirtError(f"{dom.name()}'s VNC server has no TCP port webvirt can reach.", errors.UNSUPPORTED)
        # With a password (other drivers), the proxy answers the server's VNC authentication itself.
        return VncEndpoint("tcp", "127.0.0.1" if listen in ANY_ADDRESS else listen.strip("[]"), port, password)
    if not has_tcp:
        raise VirtError(f"{dom.name()}'s VNC server has no TCP port, and libvirt only hands out its socket to "
                        "connections on the same machine.", errors.UNSUPPORTED)
    if listen.startswith("127.") or listen in ("::1", "localhost"):
        raise VirtError(f"{dom.name()}'s VNC server listens only on its host's loopback address; register the "
                        "host as qemu+ssh:// to reach it through an SSH tunnel.", errors.UNSUPPORTED)
    host = parts.hostname if listen in ANY_ADDRESS else listen.strip("[]")
    return VncEndpoint("tcp", host or "", port, password)


def open_graphics_socket(conn: libvirt.virConnect, uuid: str) -> socket.socket:
    """A socket connected to the domain's VNC server, opened by libvirt (local hosts only), without its password."""
    dom = lookup(conn, uuid)
    _active(dom)
    fd = dom.openGraphicsFD(0, libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def open_serial(conn: libvirt.virConnect, uuid: str, force: bool = False) -> libvirt.virStream:
    """A non-blocking stream on the domain's first console. Raises CONFLICT when someone else holds it."""
    dom = lookup(conn, uuid)
    _active(dom)
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    flags = libvirt.VIR_DOMAIN_CONSOLE_SAFE | (libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else 0)
    try:
        dom.openConsole(None, stream, flags)
    except libvirt.libvirtError as exc:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        if "Active console session exists" in str(exc):
            raise VirtError(f"Someone else has {dom.name()}'s serial console open.", errors.CONFLICT) from None
        if exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_NO_SUPPORT):
            raise VirtError(f"{dom.name()}'s host cannot open a serial console for it.", errors.UNSUPPORTED) from None
        if "character device" in str(exc) or "cannot find" in str(exc):
            raise VirtError(f"{dom.name()} has no serial console. Add a <console type='pty'/> device.",
                            errors.UNSUPPORTED) from None
        raise
    return stream


def read_until(stream: libvirt.virStream, marker: str, timeout: float) -> tuple[bool, str]:
    """Read a non-blocking console stream (open_serial) until `marker` appears. Returns whether it
    did (False when `timeout` passes or the console closes first) and the last of what was read,
    to say why. The stream is aborted afterwards: a boot check only listens, and a guest that prints
    the marker before the stream opens is never seen (open it while the domain is still paused)."""
    wanted = marker.encode()
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = stream.recv(65536)
            if data == -2:  # nothing yet (EAGAIN)
                time.sleep(0.05)
                continue
            if not data:
                break
            seen = (seen + data)[-(len(wanted) + 65536):]
            if wanted in seen:
                return True, seen.decode(errors="replace")[-500:]
        return False, seen.decode(errors="replace")[-500:]
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass


def screenshot(conn: libvirt.virConnect, uuid: str, limit: int = 16 * 1024 * 1024) -> tuple[str, bytes]:
    """The domain's screen as libvirt gives it (mime type, bytes; QEMU answers with PPM)."""
    dom = lookup(conn, uuid)
    _active(dom)
    chunks: list[bytes] = []
    size = 0
    with finished(conn.newStream(0)) as stream:
        mime = dom.screenshot(stream, 0, 0) or "image/x-portable-pixmap"
        while True:
            data = stream.recv(262144)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > limit:
                raise VirtError("The screenshot is larger than webvirt accepts.", errors.INVALID)
    return mime, b"".join(chunks)


def ppm_to_png(data: bytes) -> bytes:
    """Turn QEMU's binary PPM (P6, 8 bits) into a PNG a browser can show; no imaging library needed."""
    import struct
    import zlib

    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise VirtError("libvirt sent a screenshot in a format webvirt does not read.", errors.UNSUPPORTED)
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1:pos + 1 + width * height * 3]
    stride = width * 3
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
