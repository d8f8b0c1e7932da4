"""The less common ways to a VNC server: an SSH tunnel to a qemu+ssh host, and VNC authentication
answered by the proxy so that a domain's VNC password never reaches the browser.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from webvirt.consoles.streams import Stream
from webvirt.hosts.models import Host
from webvirt.virt import errors
from webvirt.virt.console import VncEndpoint
from webvirt.virt.errors import VirtError

RFB_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2


def _not_an_option(value: str, what: str) -> str:
    """Refuse a name ssh would read as an option (`-oProxyCommand=...` runs a command here)."""
    if not value or value.startswith("-"):
        raise VirtError(f"The {what} '{value}' cannot be used for an SSH tunnel: a name must not be empty or "
                        "start with '-'. Correct the host's URI.", errors.INVALID)
    return value


def ssh_command(host: Host, endpoint: VncEndpoint) -> list[str]:
    """`ssh -W` forwards one TCP connection through the host's SSH server, with the host's stored key."""
    from webvirt.hosts.connections import manager

    target = _not_an_option(endpoint.ssh_target, "SSH destination")
    forward = f"{_not_an_option(endpoint.host, 'VNC address')}:{endpoint.port}"
    command = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ExitOnForwardFailure=yes"]
    if host.has_ssh_key:
        # The connection manager keeps the decrypted key in a 0600 file for libvirt's own ssh transport.
        uri = manager._uri_with_key(host.target())
        keyfile = parse_qs(urlsplit(uri).query).get("keyfile", [""])[0]
        command += ["-i", keyfile, "-o", "IdentitiesOnly=yes"]
    if not endpoint.ssh_verify:
        # no_verify=1 in the host's URI: accept the server's key without recording it, so that a key
        # that changed later does not turn off forwarding (which is all this command does).
        command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if endpoint.ssh_port:
        command += ["-p", str(endpoint.ssh_port)]
    # "--" ends the options: whatever the URI says, the destination is never read as one.
    return [*command, "-W", forward, "--", target]


async def open_ssh_tunnel(host: Host, endpoint: VncEndpoint) -> tuple[Any, Any, bytes]:
    """A (reader, writer, greeting) over `ssh -W`; the writer's close() ends the tunnel.

    The VNC server's 12-byte greeting is read here: it proves the tunnel is up, and when it does not
    come, ssh's own words say why (refused key, unknown host key, nothing listening).
    """
    proc = await asyncio.create_subprocess_exec(*ssh_command(host, endpoint), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        greeting = await asyncio.wait_for(proc.stdout.readexactly(12), 10)
    except (asyncio.IncompleteReadError, TimeoutError):
        if proc.returncode is None:
            proc.kill()
        said = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else "no answer within 10 s"
        raise VirtError(f"The SSH tunnel to {endpoint.ssh_target} for the VNC server failed: {reason}",
                        errors.UNREACHABLE) from None
    # What ssh still writes to stderr (a line or two at most) stays in the pipe's reader, unread.
    return proc.stdout, proc.stdin, greeting


def _des_key(password: str) -> bytes:
    # VNC authentication uses DES with the password's bits reversed in each byte (a historical quirk).
    key = password.encode("latin-1", errors="replace")[:8].ljust(8, b"\0")
    return bytes(int(f"{byte:08b}"[::-1], 2) for byte in key)


def vnc_response(password: str, challenge: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = _des_key(password)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # 3DES with one key repeated is DES
    return encryptor.update(challenge) + encryptor.finalize()


async def vnc_authenticate(stream: Stream, password: str, greeting: bytes = b"") -> None:
    """Do the server's RFB 3.8 handshake up to a successful SecurityResult, as a client with the password.

    `greeting` is the server's version line when the caller has read it already.
    """
    failed = VirtError("The domain's VNC server refused webvirt's password.", errors.AUTH)
    try:
        version = greeting or await asyncio.wait_for(stream.readexactly(12), 5)
        if not version.startswith(b"RFB 003."):
            raise failed
        stream.write(RFB_VERSION)
        count = (await stream.readexactly(1))[0]
        types = await stream.readexactly(count) if count else b""
        if SECURITY_VNC not in types:
            raise VirtError("The domain's VNC server does not offer password authentication.", errors.UNSUPPORTED)
        stream.write(bytes([SECURITY_VNC]))
        challenge = await stream.readexactly(16)
        stream.write(vnc_response(password, challenge))
        (result,) = struct.unpack(">I", await stream.readexactly(4))
    except (asyncio.IncompleteReadError, TimeoutError, OSError):
        raise failed from None
    if result != 0:
        raise failed


async def offer_no_auth(receive: Callable[[], Awaitable[dict[str, Any]]],
                        send: Callable[[dict[str, Any]], Awaitable[None]]) -> bytes | None:
    """Play the RFB server's side of the handshake to the browser, offering no authentication.

    Returns whatever the browser sent after its security choice (its ClientInit, for the real server),
    or None when the browser went away.
    """
    buffer = bytearray()

    async def read(n: int) -> bytes | None:
        while len(buffer) < n:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return None
            buffer.extend(message.get("bytes") or (message.get("text") or "").encode())
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    await send({"type": "websocket.send", "bytes": RFB_VERSION})
    if await read(12) is None:
        return None
    await send({"type": "websocket.send", "bytes": bytes([1, SECURITY_NONE])})
    if await read(1) is None:
        return None
    await send({"type": "websocket.send", "bytes": struct.pack(">I", 0)})
    return bytes(buffer)
