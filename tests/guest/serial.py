"""The tiny guest's root shell on its serial port, driven from the host side of the pty.

    with SerialShell(dom) as shell:                 # a running libvirt virDomain, or a pty path
        shell.wait_for(READY_MARKER, 40)
        shell.wait_for_line(READY_MARKER, 5)        # -> "WEBVIRT-GUEST-READY hostname=... disk=/dev/vda"
        seed_report(shell)                          # -> {"instance-id": ..., "hostname": ..., "keys": "2"} or None
        shell.run("uname -r")                       # -> "6.1.0-...\\n"
        write_disk_marker(shell, "before-snapshot")
        set_memory_counter(shell, 7)

How ``run`` finds a command's output: the typed line is wrapped in a begin and an end marker,
unique to this SerialShell and this command, which the guest prints with ``printf '%s-%s'``. The
shell echoes the typed line, but that holds the pieces apart (``WVB 1a2b3c4d7``), so only the
guest's output contains the joined marker (``WVB-1a2b3c4d7``). Whatever else is on the line,
such as a prompt, output left over from before a snapshot revert, or a boot message, is ignored.

After a domain restarts it has a new pty: reading or writing the old one raises ``SerialClosed``,
and the caller makes a new SerialShell. After a snapshot revert with memory the guest's shell may
be mid-line; every command starts with Ctrl+U, which clears a half-typed line.

No Django imports, no libvirt import (a domain is anything with ``XMLDesc``).
"""

from __future__ import annotations

import errno
import os
import re
import select
import shlex
import termios
import time
import tty
import uuid
from pathlib import Path
from types import TracebackType
from typing import Protocol
from xml.etree import ElementTree

from tests.guest.guest import DISK_RESERVED_OFFSET, MEMORY_COUNTER_FILE, SECTOR_BYTES, SEED_MARKER

# The disk marker's sector: the first of the range build.sh keeps outside the FAT filesystem.
MARKER_SECTOR = DISK_RESERVED_OFFSET // SECTOR_BYTES
# A marker is one word, so it needs no quoting in the guest's shell and fits in one sector.
_MARKER_TEXT = re.compile(r"[A-Za-z0-9._:=+-]{1,200}")
# busybox's line editor takes at most 1024 characters; stay well under it.
_MAX_LINE = 900
# Until the shell has answered once, the probe is typed again this often (seconds). The guest's
# tty keeps what is typed before the shell reads it, so one probe is usually enough; typing it
# again covers one that was lost, e.g. while the shell was being respawned.
_PROBE_INTERVAL = 2.0
# How long the first command waits for the shell at least: an emulated guest on a host busy with other
# test runs has taken over 20 s to answer after its READY line (its tty echoed the probes meanwhile).
_FIRST_ANSWER = 60.0
_KILL_LINE = b"\x15"  # Ctrl+U: clears the line in busybox's line editor and in a cooked tty
_ENTER = b"\r"  # what a terminal sends; the guest's tty (icrnl) makes it a newline


class SerialClosed(ConnectionError):
    """The pty was hung up: its domain stopped or restarted (then with a new pty)."""


class CommandFailed(RuntimeError):
    """A command run in the guest's shell exited with a status other than 0."""

    def __init__(self, command: str, status: int, output: str) -> None:
        super().__init__(f"{command!r} exited with {status} in the guest; its output:\n{output}")
        self.command, self.status, self.output = command, status, output


class Domain(Protocol):
    """What SerialShell needs of a libvirt virDomain."""

    def XMLDesc(self, flags: int = 0) -> str: ...


def serial_pty_path(dom: Domain) -> str:
    """The host side of the running domain's first serial pty, from its live XML."""
    root = ElementTree.fromstring(dom.XMLDesc(0))
    for source in root.findall("./devices/serial[@type='pty']/source"):
        path = source.get("path")
        if path:
            return path
    raise ValueError("the domain has no serial pty (is it running?)")


class SerialShell:
    """Reads and writes the guest's serial port; runs commands in its root shell."""

    def __init__(self, source: Domain | str | Path) -> None:
        self.path = str(source) if isinstance(source, (str, Path)) else serial_pty_path(source)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # Raw: our side must neither echo what the guest prints back to it as input nor
        # translate what we type.
        tty.setraw(self.fd, termios.TCSANOW)
        self.seen = bytearray()  # everything read since opening, carriage returns removed
        self._token = uuid.uuid4().hex[:8]  # markers of another SerialShell (or a revert) never match
        self._count = 0
        self._answered = False

    # --- reading and writing ------------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        """Append what the guest printed within `timeout` seconds to `seen`."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # QEMU closed its side: the domain is gone
                raise SerialClosed(f"{self.path} was hung up: the domain stopped or restarted") from exc
            raise
        if not data:
            raise SerialClosed(f"{self.path} reached its end")
        self.seen += data.replace(b"\r", b"")

    def send(self, data: str | bytes) -> None:
        """Type `data` into the guest's serial port as it is (no Enter added)."""
        raw = data.encode() if isinstance(data, str) else data
        while raw:
            select.select([], [self.fd], [], 1.0)
            try:
                raw = raw[os.write(self.fd, raw):]
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise SerialClosed(f"{self.path} was hung up: the domain stopped or restarted") from exc
                raise

    def _search(self, pattern: bytes, start: int, timeout: float) -> re.Match[bytes] | None:
        """`pattern` (a regex) in `seen` at or after `start`, reading for up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while not (found := re.compile(pattern).search(self.seen, start)):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(min(left, 0.5))
        return found

    def wait_for(self, text: str, timeout: float) -> float:
        """Read until `text` has appeared since opening; return the seconds it took."""
        started = time.monotonic()
        if self._search(re.escape(text.encode()), 0, timeout) is None:
            raise TimeoutError(f"{text!r} not seen on {self.path} in {timeout:g} s; it showed:\n"
                               + self.tail())
        return time.monotonic() - started

    def wait_for_line(self, text: str, timeout: float) -> str:
        """Read until a whole line containing `text` has appeared since opening; return that line."""
        found = self._search(rb"[^\n]*" + re.escape(text.encode()) + rb"[^\n]*\n", 0, timeout)
        if found is None:
            raise TimeoutError(f"no whole line with {text!r} on {self.path} in {timeout:g} s; it showed:\n"
                               + self.tail())
        return found[0].decode(errors="replace").rstrip("\n")

    def tail(self, chars: int = 2000) -> str:
        return self.seen[-chars:].decode(errors="replace")

    # --- the shell -------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._count += 1
        return f"{self._token}{self._count}"

    def wait_for_shell(self, timeout: float = 30.0) -> float:
        """Type a probe until the shell answers it; return the seconds it took.

        ``run`` does this once by itself. The shell starts just after READY is printed, and a
        probe typed while the tty is still in the middle of something may be lost to it.
        """
        started = time.monotonic()
        ident = self._next_id()
        start = len(self.seen)
        while True:
            self.send(_KILL_LINE + f"printf '%s-%s\\n' WVH {ident}".encode() + _ENTER)
            left = started + timeout - time.monotonic()
            if self._search(f"WVH-{ident}\n".encode(), start, min(_PROBE_INTERVAL, left)):
                self._answered = True
                return time.monotonic() - started
            if time.monotonic() - started >= timeout:
                raise TimeoutError(f"the shell on {self.path} did not answer in {timeout:g} s; it showed:\n"
                                   + self.tail())

    def run(self, command: str, timeout: float = 20.0, *, check: bool = True) -> str:
        """Run one line of sh in the guest; return what it printed (stdout and stderr).

        Its stdin is /dev/null, so a command cannot swallow what is typed next. With `check`,
        an exit status other than 0 raises CommandFailed.
        """
        if "\n" in command or "\r" in command:
            raise ValueError("run() takes one line; join commands with ';' or '&&'")
        if not self._answered:
            self.wait_for_shell(max(timeout, _FIRST_ANSWER))
        ident = self._next_id()
        # eval keeps the command whole (a '#' or '&' in it cannot reach the end marker); "$?" is
        # expanded before the last printf runs, so it is the command's status.
        line = (f"printf '%s-%s\\n' WVB {ident}; eval {shlex.quote(command)} </dev/null; "
                f"printf '%s-%s:%s\\n' WVE {ident} \"$?\"")
        if len(line) > _MAX_LINE:
            raise ValueError(f"command too long for the guest's line editor ({len(line)} > {_MAX_LINE})")
        start = len(self.seen)
        self.send(_KILL_LINE + line.encode() + _ENTER)
        # The output is what lies between the two markers; the status follows the end marker.
        found = self._search(f"(?s)WVB-{ident}\n(.*?)WVE-{ident}:([0-9]+)\n".encode(), start, timeout)
        if not found:
            raise TimeoutError(f"{command!r} did not finish in the guest within {timeout:g} s; "
                               f"the serial port showed:\n{self.tail()}")
        output, status = found[1].decode(errors="replace"), int(found[2])
        if check and status != 0:
            raise CommandFailed(command, status, output)
        return output

    # --- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SerialShell:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- disk and memory state, for restart and snapshot tests -----------------------------------------

def write_disk_marker(shell: SerialShell, text: str) -> None:
    """Write `text` (one word) to sector MARKER_SECTOR of /dev/vda, then flush it to the disk.

    The rest of the sector is zeroed (conv=sync pads the short input), so a shorter marker
    does not leave the end of a longer one behind.
    """
    if not _MARKER_TEXT.fullmatch(text):
        raise ValueError(f"a disk marker is 1-200 of [A-Za-z0-9._:=+-], not {text!r}")
    shell.run(f"printf '%s\\n' {text} | dd of=/dev/vda bs={SECTOR_BYTES} seek={MARKER_SECTOR} count=1 "
              "conv=sync,fsync && flush-disk")


def read_disk_marker(shell: SerialShell) -> str:
    """The marker in sector MARKER_SECTOR of /dev/vda as the disk has it; "" when the sector is zero.

    flush-disk first drops the guest's caches, so this reads the disk, not the guest's memory of it.
    """
    scratch = "/tmp/webvirt-sector"
    output = shell.run(f"flush-disk && dd if=/dev/vda of={scratch} bs={SECTOR_BYTES} skip={MARKER_SECTOR} "
                       f"count=1 2>/dev/null && tr -d '\\000' <{scratch}")
    return output.strip()


def set_memory_counter(shell: SerialShell, value: int) -> None:
    """Keep `value` in a file in the guest's RAM (MEMORY_COUNTER_FILE, on the initramfs)."""
    shell.run(f"echo {int(value)} >{MEMORY_COUNTER_FILE}")


def read_memory_counter(shell: SerialShell) -> int | None:
    """The value set_memory_counter kept; None when the guest has none (it started since)."""
    output = shell.run(f"cat {MEMORY_COUNTER_FILE} 2>/dev/null || true").strip()
    return int(output) if output else None


# --- the cloud-init seed ----------------------------------------------------------------------------

_SEED_LINE = re.compile(rf"{SEED_MARKER} (none|instance-id=(\S*) hostname=(\S*) keys=([0-9]+))\n".encode())


def seed_report(shell: SerialShell) -> dict[str, str] | None:
    """What the guest read from its cloud-init seed at boot, from the line it printed before READY:
    {"instance-id": ..., "hostname": ..., "keys": ...}, or None when it found no seed.

    Call it once READY has been seen (the line comes just before it); ValueError when it has not.
    """
    found = _SEED_LINE.search(shell.seen)
    if found is None:
        raise ValueError(f"no {SEED_MARKER} line on {shell.path} yet; it showed:\n{shell.tail()}")
    if found[1] == b"none":
        return None
    return {"instance-id": found[2].decode(), "hostname": found[3].decode(), "keys": found[4].decode()}
