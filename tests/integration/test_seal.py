"""Sealing with the real virt-sysprep, on domains defined in libvirtd with QEMU (qemu:///system).

A shut-off domain is sealed by name (virt-sysprep -d), a template through its disk files (-a), as
the catalog's seal job does. The sealed disk is a Linux root filesystem made at test time
(mkfs.ext4 -d): enough for libguestfs' inspection to call it a Debian root (/etc, /bin, /etc/fstab
or /etc/hosts, /etc/os-release), with a machine-id, SSH host keys, logs, cloud-init state, and
files that sealing must leave alone. It is read back with debugfs from a raw copy, so the check
needs no second appliance boot. Each seal boots libguestfs' appliance under TCG: 40 to 70 s here.
"""

from __future__ import annotations

import subprocess
import uuid as uuidlib
from pathlib import Path

import libvirt
import pytest

from tests.guest.guest import make_overlay, tiny_domain_xml
from tests.integration.conftest import QEMU_URI, pool_dir
from webvirt.virt import seal
from webvirt.virt.clone import make_template

pytestmark = [pytest.mark.qemu, pytest.mark.system]

SEAL_TIMEOUT = 300.0
ROOT_FILES = {
    "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                      'VERSION_ID="12"\nID=debian\n',
    "etc/debian_version": "12.8\n",
    "etc/fstab": "LABEL=root / ext4 defaults 0 1\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/hostname": "template\n",
    "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    "etc/ssh/ssh_host_ed25519_key": "PRIVATE\n",
    "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA template\n",
    "etc/ssh/ssh_host_rsa_key": "PRIVATE\n",
    "etc/ssh/sshd_config": "PermitRootLogin no\n",
    "var/log/syslog": "Dec  2 10:00:00 template kernel: booted\n",
    "var/log/cloud-init.log": "cloud-init ran\n",
    "var/lib/cloud/instances/iid-template/obj.pkl": "state\n",
    "var/lib/cloud/data/instance-id": "iid-template\n",
    "var/lib/cloud/seed/nocloud/meta-data": "instance-id: iid-template\n",
    "root/.bash_history": "cat /etc/shadow\n",
    "home/alice/notes.txt": "mine\n",
    "bin/.keep": "",
}
GONE = ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key",
        "/var/log/syslog", "/var/log/cloud-init.log", "/var/lib/cloud/instance", "/var/lib/cloud/instances",
        "/var/lib/cloud/data", "/root/.bash_history"]
KEPT = {"/home/alice/notes.txt": b"mine\n", "/etc/ssh/sshd_config": b"PermitRootLogin no\n",
        "/etc/hostname": b"template\n", "/var/lib/cloud/seed/nocloud/meta-data": b"instance-id: iid-template\n"}


def linux_disk(folder: Path) -> Path:
    """A qcow2 disk whose whole device is an ext4 Linux root filesystem holding ROOT_FILES."""
    root = folder / "root"
    for name, text in ROOT_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "var/lib/cloud/instance").symlink_to("instances/iid-template")
    raw = folder / "linux.raw"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw), "32M"], check=True)
    disk = folder / "linux.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()
    return disk


def read_ext4(disk: Path, path: str) -> bytes | None:
    """The file at `path` in the ext4 filesystem that is the whole of the qcow2 `disk`, or None."""
    raw = disk.with_suffix(".readback.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
    try:
        found = subprocess.run(["debugfs", "-R", f"stat {path}", str(raw)], capture_output=True, text=True)
        if "File not found" in found.stderr:
            return None
        return subprocess.run(["debugfs", "-R", f"cat {path}", str(raw)], capture_output=True,
                              check=True).stdout
    finally:
        raw.unlink()


def define(conn: libvirt.virConnect, disk: Path, names: list[str]) -> str:
    """A persistent, shut-off, emulated domain on `disk`; its name."""
    name = f"webvirt-it-seal-{uuidlib.uuid4().hex[:8]}"
    names.append(name)
    conn.defineXML(tiny_domain_xml(name, str(disk), vnc=False))
    return name


@pytest.fixture
def sealable() -> None:
    reason = seal.available()
    if reason:
        pytest.fail(f"scripts/setup.sh installs libguestfs-tools and a kernel, yet: {reason}")


def assert_sealed(result: seal.SealResult, disk: Path) -> None:
    print(f"sealed in {result.seconds:.1f} s: {result.operations}")
    assert result.sealed, result.reason
    assert {"machine-id", "ssh-hostkeys", "logfiles", "bash-history", "customize"} <= set(result.operations)
    assert "user-account" not in result.operations and "ssh-userdir" not in result.operations
    assert read_ext4(disk, "/etc/machine-id") == b""  # empty, not missing: systemd fills it at boot
    assert {path: read_ext4(disk, path) for path in GONE} == dict.fromkeys(GONE)
    assert {path: read_ext4(disk, path) for path in KEPT} == KEPT


def test_a_shut_off_domain_is_sealed_by_name_and_keeps_its_users_files(
        sealable, qemu_conn, workdir, guest_names):
    disk = linux_disk(workdir)
    name = define(qemu_conn, disk, guest_names)

    assert_sealed(seal.seal(QEMU_URI, name, timeout=SEAL_TIMEOUT), disk)


def test_a_template_is_sealed_through_its_disk_files(sealable, qemu_conn, scratch_pool, guest_names):
    """What the catalog's seal job does: make_template marks the disks <readonly/> in the definition,
    which virt-sysprep -d skips, so the template's disk files are sealed with their formats."""
    disk = linux_disk(pool_dir(scratch_pool))
    scratch_pool.refresh(0)
    name = define(qemu_conn, disk, guest_names)
    _xml, disks = make_template(qemu_conn, qemu_conn.lookupByName(name).UUIDString())

    by_name = seal.seal(QEMU_URI, name, timeout=SEAL_TIMEOUT)
    assert not by_name.sealed
    assert by_name.reason == ("virt-sysprep: the domain has no writable disk to seal (a template's disks "
                              "are read-only in its definition).")

    assert [(d.path, d.format) for d in disks] == [(str(disk), "qcow2")]
    assert_sealed(seal.seal_disks(QEMU_URI, [(d.path, d.format) for d in disks], timeout=SEAL_TIMEOUT), disk)


def test_a_disk_without_an_operating_system_is_not_sealed_and_says_why(
        sealable, qemu_conn, guest_image, workdir, guest_names):
    overlay = make_overlay(guest_image, workdir / "tiny.qcow2")
    name = define(qemu_conn, overlay, guest_names)

    result = seal.seal(QEMU_URI, name, timeout=SEAL_TIMEOUT)

    assert not result.sealed
    assert result.reason == "virt-sysprep: no operating systems were found in the guest image"


def test_a_running_domain_is_not_sealed(sealable, qemu_conn, guest_image, workdir, guest_names):
    overlay = make_overlay(guest_image, workdir / "tiny.qcow2")
    name = define(qemu_conn, overlay, guest_names)
    qemu_conn.lookupByName(name).create()  # the guest fixture forces it off afterwards

    result = seal.seal(QEMU_URI, name, timeout=SEAL_TIMEOUT)

    assert not result.sealed
    assert result.reason.startswith("virt-sysprep: domain is a live virtual machine.")
    assert "\n" not in result.reason


def test_an_unknown_domain_is_not_sealed(sealable):
    result = seal.seal(QEMU_URI, f"webvirt-it-nothing-{uuidlib.uuid4().hex[:8]}")
    assert not result.sealed
    assert "no libvirt domain called" in result.reason


def test_a_seal_that_runs_out_of_time_is_stopped_with_its_qemu(sealable, qemu_conn, workdir, guest_names):
    disk = linux_disk(workdir)
    name = define(qemu_conn, disk, guest_names)

    result = seal.seal(QEMU_URI, name, timeout=8)

    assert not result.sealed
    assert result.reason == "virt-sysprep did not finish within 8 s and was stopped; the disk may be partly sealed."
    assert 8 <= result.seconds < 20
    left = subprocess.run(["pgrep", "-f", str(disk)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes still using {disk}: {left}"
