#!/usr/bin/env python3
"""Boot the tiny guest once and check it works end to end.

    .venv/bin/python tests/guest/check_boot.py [--uri qemu:///system] [--no-shutdown]

Defines a transient domain from a throwaway overlay of the cached image, waits
for WEBVIRT-GUEST-READY on the serial console (virDomainOpenConsole), types
``echo hello`` and waits for ``hello``, then presses the ACPI power button
(``dom.shutdown()``) and waits for the guest to power off (or destroys it).
Prints timings. Exit status 0 on success. Needs libvirt-python, no Django.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import libvirt

from tests.guest.guest import (
    READY_MARKER,
    ensure_image,
    make_overlay,
    tiny_domain_xml,
)


class Console:
    """Serial console over a libvirt stream, collected by an event callback."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain) -> None:
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self.stream.eventAddCallback(libvirt.VIR_STREAM_EVENT_READABLE, self._readable, None)

    def _readable(self, stream, events, opaque) -> None:
        while True:
            try:
                data = stream.recv(65536)
            except libvirt.libvirtError:
                return
            if data == -2 or not data:  # no data now / end of stream
                return
            with self.cond:
                self.buf += data
                self.cond.notify_all()

    def wait_for(self, pattern: bytes, timeout: float, start: int = 0) -> int:
        """Wait until ``pattern`` (a regex) appears after ``start``; return the end offset."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self.cond:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m.end()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{pattern!r} not seen; console so far:\n"
                                       + self.buf.decode(errors="replace"))
                self.cond.wait(left)

    def send(self, data: bytes) -> None:
        self.stream.send(data)

    def close(self) -> None:
        try:
            self.stream.eventRemoveCallback()
            self.stream.abort()
        except libvirt.libvirtError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default="qemu:///system")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--no-shutdown", action="store_true", help="destroy instead of testing ACPI shutdown")
    args = ap.parse_args()

    t0 = time.monotonic()
    base = ensure_image()
    print(f"image: {base} ({base.stat().st_size / 1e6:.1f} MB, ready in {time.monotonic() - t0:.1f} s)")

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors still raise
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
    conn = libvirt.open(args.uri)

    workdir = Path(tempfile.mkdtemp(prefix="webvirt-guest-check-"))
    os.chmod(workdir, 0o755)  # qemu may run as another user
    name = f"webvirt-check-{uuidlib.uuid4().hex[:8]}"
    overlay = make_overlay(base, workdir / f"{name}.qcow2")
    dom = None
    console = None
    ok = False
    try:
        t_start = time.monotonic()
        dom = conn.createXML(tiny_domain_xml(name, str(overlay)), 0)
        t_created = time.monotonic()
        console = Console(conn, dom)
        pos = console.wait_for(re.escape(READY_MARKER).encode(), args.timeout)
        t_ready = time.monotonic()
        line = console.buf[console.buf.rfind(b"\n", 0, pos) + 1:pos + 80].split(b"\r")[0]
        print("serial:", line.decode(errors="replace").strip())
        console.send(b"echo hello\r")
        console.wait_for(rb"(^|[\r\n])hello\r?\n", 10, pos)
        t_shell = time.monotonic()
        print(f"domain {name}: createXML {t_created - t_start:.2f} s, "
              f"{READY_MARKER} after {t_ready - t_start:.2f} s, "
              f"shell answered after {t_shell - t_start:.2f} s")
        ok = True

        if not args.no_shutdown:
            t_sd = time.monotonic()
            dom.shutdown()
            deadline = t_sd + 15
            gone = False
            while time.monotonic() < deadline:
                try:
                    if not dom.isActive():
                        gone = True
                        break
                except libvirt.libvirtError:  # transient domain vanished
                    gone = True
                    break
                time.sleep(0.1)
            if gone:
                print(f"ACPI shutdown: powered off after {time.monotonic() - t_sd:.2f} s")
                dom = None
            else:
                print("ACPI shutdown: guest did not power off within 15 s")
                ok = False
    except TimeoutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
    finally:
        if console:
            console.close()
        if dom is not None:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
