"""The tiny guest's own disk and RAM through its serial shell, on libvirtd with QEMU (qemu:///system).

What snapshot tests rest on: the guest's shell answers commands reliably (tests/guest/serial.py),
a marker written to the reserved end of its disk is on the disk (the host reads it there), and it
survives a forced power-off and a fresh start, while a counter kept in the guest's RAM does not.
Domains are defined with plain libvirt, not through the webvirt API.
"""

from __future__ import annotations

import subprocess
import uuid as uuidlib
from pathlib import Path

import libvirt
import pytest

from tests.guest.guest import (
    DISK_RESERVED_BYTES,
    DISK_RESERVED_OFFSET,
    DISK_SIZE,
    READY_MARKER,
    make_overlay,
    tiny_domain_xml,
)
from tests.guest.serial import (
    CommandFailed,
    SerialClosed,
    SerialShell,
    read_disk_marker,
    read_memory_counter,
    set_memory_counter,
    write_disk_marker,
)

pytestmark = pytest.mark.qemu

BOOT_TIMEOUT = 40.0


def define_guest(conn: libvirt.virConnect, guest_image: Path, workdir: Path, names: list[str]) -> libvirt.virDomain:
    """A persistent, shut-off tiny guest on its own overlay of the image, without VNC."""
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    names.append(name)
    overlay = make_overlay(guest_image, workdir / f"{name}.qcow2")
    return conn.defineXML(tiny_domain_xml(name, str(overlay), vnc=False))


def boot(dom: libvirt.virDomain) -> SerialShell:
    """Start `dom` and return a shell on its (new) serial pty once the guest is up."""
    dom.create()
    shell = SerialShell(dom)  # the pty exists from the start; READY comes seconds later
    try:
        seconds = shell.wait_for(READY_MARKER, BOOT_TIMEOUT)
    except BaseException:
        shell.close()
        raise
    print(f"{READY_MARKER} {seconds:.1f} s after the start call returned")
    return shell


def raw_copy(overlay: Path) -> Path:
    """The guest's whole disk as the host sees it, in a raw file next to it (the guest must be off)."""
    raw = overlay.with_suffix(".raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(overlay), str(raw)], check=True)
    return raw


def test_the_serial_shell_returns_each_commands_own_output_and_status(
        qemu_conn: libvirt.virConnect, guest_image: Path, workdir: Path, guest_names: list[str]) -> None:
    dom = define_guest(qemu_conn, guest_image, workdir, guest_names)
    with boot(dom) as shell:
        print(f"the shell answered after {shell.wait_for_shell():.2f} s more")
        assert shell.run("echo hello") == "hello\n"
        assert shell.run("printf no-newline") == "no-newline"
        assert shell.run("echo a # b & c") == "a\n"  # the comment stays inside the command

        # A half-typed line (as a snapshot revert may leave one) is cleared, not run.
        shell.send("echo half-typed")
        assert shell.run("echo whole") == "whole\n"

        with pytest.raises(CommandFailed) as failed:
            shell.run("ls /nonexistent")
        assert (failed.value.status, failed.value.output) == (1, "ls: /nonexistent: No such file or directory\n")
        assert shell.run("ls /nonexistent 2>/dev/null", check=False) == ""
        dom.destroy()

        # The domain is gone, and so is its pty: the old shell says so instead of waiting.
        with pytest.raises(SerialClosed):
            shell.run("true", timeout=5)


def test_a_disk_marker_survives_a_restart_and_a_memory_counter_does_not(
        qemu_conn: libvirt.virConnect, guest_image: Path, workdir: Path, guest_names: list[str]) -> None:
    dom = define_guest(qemu_conn, guest_image, workdir, guest_names)
    marker = f"disk-of-{dom.name()}"
    with boot(dom) as shell:
        # A fresh overlay: the reserved range is empty and nothing is in RAM yet.
        assert read_disk_marker(shell) == ""
        assert read_memory_counter(shell) is None
        write_disk_marker(shell, marker)
        set_memory_counter(shell, 41)
        assert (read_disk_marker(shell), read_memory_counter(shell)) == (marker, 41)
    dom.destroy()  # forced off: no chance for the guest to flush anything it still held

    # The host finds the marker at the documented offset, and the FAT filesystem untouched by it.
    raw = raw_copy(workdir / f"{dom.name()}.qcow2")
    disk = raw.read_bytes()
    assert len(disk) == DISK_SIZE
    reserved = disk[DISK_RESERVED_OFFSET:DISK_RESERVED_OFFSET + DISK_RESERVED_BYTES]
    assert reserved.startswith(f"{marker}\n".encode() + bytes(16))
    fsck = subprocess.run(["fsck.fat", "-n", str(raw)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    # Started again: the disk kept the marker, the RAM lost the counter.
    with boot(dom) as shell:
        assert read_disk_marker(shell) == marker
        assert read_memory_counter(shell) is None
        write_disk_marker(shell, "short")  # a shorter marker leaves nothing of the longer one
        assert read_disk_marker(shell) == "short"
    dom.destroy()
