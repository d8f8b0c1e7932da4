"""Helpers for the tiny bootable test guest built by ``tests/guest/build.sh``.

The guest is a Debian cloud kernel with a busybox initramfs on a FAT disk booted
by syslinux. It prints ``WEBVIRT-GUEST-READY ... disk=/dev/vda`` on its serial
port when up, shows a banner on the VGA console, answers a root shell on the
serial port (and on tty1), and powers off on an ACPI power-button press
(``dom.shutdown()``).

Its own disk: the initramfs loads virtio_blk (and the virtio modules it needs),
so the shell can read and write ``/dev/vda`` with dd, and READY is printed only
once ``/dev/vda`` exists. The disk is a 33 MiB whole-disk image: a 32 MiB FAT
filesystem, then 1 MiB that no filesystem uses, ``DISK_RESERVED_OFFSET``
(32 MiB, sector 65536) to ``DISK_SIZE`` (33 MiB), zero in the base image. Tests
write raw markers there. ``flush-disk`` in the guest syncs and drops its caches,
so a read after it shows what is on the disk. ``/tmp`` lives in RAM (the
initramfs), so a file there is memory state: gone after a restart, back after
reverting a snapshot with memory. ``tests/guest/serial.py`` drives the shell
and has helpers for both.

A minimal cloud-init NoCloud reader: the initramfs also loads the IDE CD-ROM
drivers (ata_piix, sr_mod, isofs). When a CD-ROM labelled ``cidata`` is there
(``webvirt.virt.seed``; on machine 'pc' an IDE CD-ROM, as ``seed.attach`` and
``tiny_domain_xml(seed_path=...)`` make it), the guest takes its hostname from
``local-hostname`` in ``meta-data`` and prints, just before READY::

    WEBVIRT-SEED instance-id=<id> hostname=<name> keys=<n>

where ``n`` counts the SSH keys in ``user-data`` (its list items that start with
``ssh-``, ``ecdsa-`` or ``sk-``). Without a seed it prints ``WEBVIRT-SEED none``.
READY then carries the seed's hostname. A machine without a CD-ROM waits for
none, but loading and probing the IDE drivers adds about 0.4 s to every boot.

Under emulation (domain type ``qemu``) it boots in about 6 seconds. No network
interface is defined: tests must not send traffic to guests.

No Django imports: usable from plain scripts and benchmarks.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).resolve().with_name("build.sh")
GUEST_IMAGE = Path(
    os.environ.get("WEBVIRT_TEST_GUEST", str(REPO_ROOT / ".state" / "guest" / "tiny.qcow2"))
)

READY_MARKER = "WEBVIRT-GUEST-READY"
POWEROFF_MARKER = "WEBVIRT-GUEST-POWEROFF"
# "WEBVIRT-SEED instance-id=<id> hostname=<name> keys=<n>", or "WEBVIRT-SEED none"; printed before READY.
SEED_MARKER = "WEBVIRT-SEED"
SEED_NONE = f"{SEED_MARKER} none"
# Where tiny_domain_xml puts a seed: the IDE CD-ROM the guest's drivers see (seed.attach chooses hdc too).
SEED_TARGET = "hdc"

# The disk's layout, as build.sh makes it (FS_MIB, RESERVED_MIB there).
MIB = 1024 * 1024
SECTOR_BYTES = 512
DISK_RESERVED_OFFSET = 32 * MIB  # where the FAT filesystem ends: nothing in the guest uses what follows
DISK_RESERVED_BYTES = 1 * MIB
DISK_SIZE = DISK_RESERVED_OFFSET + DISK_RESERVED_BYTES
# A file in the guest's RAM (its initramfs root), for memory state.
MEMORY_COUNTER_FILE = "/tmp/webvirt-counter"


def ensure_image() -> Path:
    """Return the cached base image, building it first if it is missing or stale.

    ``build.sh`` itself is a no-op when the image is newer than the script.
    """
    stale = not GUEST_IMAGE.exists() or GUEST_IMAGE.stat().st_mtime < BUILD_SCRIPT.stat().st_mtime
    if stale:
        subprocess.run(["sh", str(BUILD_SCRIPT), str(GUEST_IMAGE)], check=True)
    return GUEST_IMAGE


def make_overlay(base: Path, dest: Path) -> Path:
    """Create a qcow2 overlay ``dest`` backed by ``base`` (never write to the base)."""
    base = Path(base).resolve()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(dest)],
        check=True,
    )
    return dest


def tiny_domain_xml(
    name: str,
    disk_path: str,
    *,
    uuid: str | None = None,
    memory_mib: int = 128,
    vnc: bool = True,
    serial_log: str | None = None,
    seed_path: str | None = None,
) -> str:
    """Domain XML for the tiny guest, booting ``disk_path`` (a qcow2 file).

    Emulated (``type='qemu'``): a Linux kernel hangs under KVM on the dev
    machines. Serial console on a pty (optionally also logged to
    ``serial_log``, which must be unique per domain), VNC on 127.0.0.1 with an
    automatic port, VGA video, no network interface. ``seed_path``: a cloud-init
    seed ISO as a read-only IDE CD-ROM (just the device: webvirt's record of the
    seed in <metadata>, which makes removing the domain delete it, is
    ``webvirt.virt.seed.attach``'s).
    """
    uuid_xml = f"\n  <uuid>{escape(uuid)}</uuid>" if uuid else ""
    log_xml = f"\n      <log file={quoteattr(str(serial_log))} append='off'/>" if serial_log else ""
    graphics_xml = (
        "\n    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>"
        "\n      <listen type='address' address='127.0.0.1'/>"
        "\n    </graphics>"
        if vnc
        else ""
    )
    seed_xml = (
        "\n    <disk type='file' device='cdrom'>"
        "\n      <driver name='qemu' type='raw'/>"
        f"\n      <source file={quoteattr(str(seed_path))}/>"
        f"\n      <target dev='{SEED_TARGET}' bus='ide'/>"
        "\n      <readonly/>"
        "\n    </disk>"
        if seed_path
        else ""
    )
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>{uuid_xml}
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <currentMemory unit='MiB'>{int(memory_mib)}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(disk_path))}/>
      <target dev='vda' bus='virtio'/>
    </disk>{seed_xml}
    <serial type='pty'>
      <target port='0'/>{log_xml}
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <input type='keyboard' bus='ps2'/>
    <input type='mouse' bus='ps2'/>{graphics_xml}
    <video>
      <model type='vga' vram='16384' heads='1'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
"""
