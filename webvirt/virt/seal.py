"""Sealing a template's disk with virt-sysprep, so that its clones do not share one machine's identity.

Sealing empties /etc/machine-id, removes the SSH host keys, logs, shell histories, temporary files,
DHCP leases, persistent net rules and cloud-init's per-instance state; it leaves user accounts,
their home directories and every other file alone. virt-sysprep (Debian package libguestfs-tools)
boots a small appliance VM with QEMU to edit the disk, so the disk files must be on this machine and
the domain must be shut off. Every "cannot seal" is a `SealResult` with a sentence in `reason`,
never an exception: a template is still usable unsealed.

virt-sysprep runs as a subprocess, not through libguestfs' Python binding: the binding is a Debian
package outside the virtualenv, and a child process can be killed with its QEMU when it hangs.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from webvirt.virt.console import is_local

log = logging.getLogger(__name__)

VIRT_SYSPREP = "virt-sysprep"
# Identity and history only: never user-account, ssh-userdir, cron-spool, mail-spool or anything
# else that removes what users made. Filtered by what the installed virt-sysprep lists.
OPERATIONS = (
    "abrt-data", "bash-history", "crash-data", "dhcp-client-state", "logfiles", "machine-id",
    "net-hwaddr", "pacct-log", "package-manager-cache", "passwd-backups", "rhn-systemid",
    "smolt-uuid", "ssh-hostkeys", "tmp-files", "udev-persistent-net", "utmp", "yum-uuid",
    "customize",
)
# virt-sysprep has no cloud-init operation; `customize` deletes what `cloud-init clean` would,
# except the seed and the administrator's scripts under /var/lib/cloud/scripts.
CLOUD_INIT_STATE = ("data", "handlers", "instance", "instances", "sem")
# `customize` writes a fresh random machine-id when it finds the file empty (libguestfs bug
# RHBZ#1557042), which every clone would then share; this --write, its last step, empties it again.
EMPTY_MACHINE_ID = "/etc/machine-id:"
# libguestfs' appliance hangs under KVM on the machines webvirt is developed on, as every Linux guest
# does there; TCG always works. A worker whose environment sets these variables keeps its own.
APPLIANCE_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
# libguestfs' words for a domain whose every disk is <readonly/> (which virt-sysprep skips).
PLAIN_ERRORS = {
    "you must call guestfs_add_drive before guestfs_launch":
        "the domain has no writable disk to seal (a template's disks are read-only in its definition).",
}


@dataclass
class SealResult:
    """What sealing did: `reason` says why not when `sealed` is False; `operations` ran when True."""

    sealed: bool
    reason: str
    seconds: float
    operations: list[str] = field(default_factory=list)


def available() -> str:
    """"" when virt-sysprep can run on this machine, else a sentence saying what is missing."""
    if shutil.which(VIRT_SYSPREP) is None:
        return ("libguestfs-tools is not installed on the webvirt worker, so templates are not sealed "
                "(apt-get install libguestfs-tools).")
    if os.environ.get("SUPERMIN_KERNEL"):
        return ""
    # supermin builds libguestfs' appliance from the host's own kernel.
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        return ("libguestfs has no kernel to boot its appliance on the webvirt worker: install one "
                "(apt-get install linux-image-cloud-amd64).")
    if not any(os.access(kernel, os.R_OK) for kernel in kernels):
        return (f"libguestfs cannot read {kernels[-1]} as the webvirt worker's user to boot its appliance "
                "(chmod 0644 /boot/vmlinuz-*, or run the worker as root).")
    return ""


def seal(uri: str, domain_name: str, *, timeout: float = 600) -> SealResult:
    """Seal the disks of the shut-off domain `domain_name` (a name or UUID) on `uri`, in place.

    virt-sysprep skips the disks a definition marks <readonly/>, as a template's are: seal those
    with `seal_disks`."""
    return _seal(uri, ["-c", _local_uri(uri), "-d", domain_name], domain_name, timeout)


def seal_disks(uri: str, disks: Sequence[tuple[str, str]], *, timeout: float = 600) -> SealResult:
    """Seal the disk files `disks`, (path, format) pairs of one machine on `uri`, in place.

    The format is given, never guessed: a raw disk whose guest wrote a qcow2 header into it would
    otherwise make libguestfs open whatever backing file that header names. Nothing may use the
    files meanwhile, and no clone may have them as its backing files yet."""
    if not disks or not all(path and fmt for path, fmt in disks):
        raise ValueError(f"seal_disks needs (path, format) pairs, not {disks!r}")
    args = [arg for path, fmt in disks for arg in ("--format", fmt, "-a", path)]
    return _seal(uri, args, ", ".join(path for path, _ in disks), timeout)


def _seal(uri: str, what_args: list[str], what: str, timeout: float) -> SealResult:
    reason = _unsealable_uri(uri) or available()
    if reason:
        return SealResult(False, reason, 0.0)
    operations = _known_operations()
    if not operations:
        return SealResult(False, f"{VIRT_SYSPREP} does not list its operations: it cannot run here.", 0.0)
    argv = [VIRT_SYSPREP, *what_args, "--no-network", "--operations", ",".join(operations),
            *_customize_args(operations)]
    started = time.monotonic()
    returncode, output = _run(argv, timeout)
    seconds = round(time.monotonic() - started, 1)
    if returncode is None:
        return SealResult(False, f"{VIRT_SYSPREP} did not finish within {timeout:.0f} s and was stopped; "
                                 "the disk may be partly sealed.", seconds)
    if returncode != 0:
        return SealResult(False, condense(output, returncode), seconds)
    log.info("sealed %s on %s in %.1f s", what, uri, seconds)
    return SealResult(True, "", seconds, operations)


def _unsealable_uri(uri: str) -> str:
    """Why the domains of `uri` cannot be sealed from here, or ""."""
    driver = urlsplit(uri).scheme.split("+")[0]
    if driver == "test":
        return "Domains of libvirt's test driver have no disk image to seal."
    if driver != "qemu":
        return f"Only QEMU domains can be sealed; {uri} is a {driver or 'unknown'} host."
    if not is_local(uri):
        return (f"Only templates on this machine can be sealed: virt-sysprep must open the disk files, "
                f"and {urlsplit(uri).hostname} is another host.")
    return ""


def _local_uri(uri: str) -> str:
    """`uri` without a transport: qemu+ssh://localhost/system is qemu:///system, without ssh's login."""
    parts = urlsplit(uri)
    if not parts.hostname:
        return uri
    return f"qemu://{parts.path or '/system'}"


def _known_operations() -> list[str]:
    """OPERATIONS that the installed virt-sysprep has, in OPERATIONS' order."""
    try:
        listed = subprocess.run([VIRT_SYSPREP, "--list-operations"], capture_output=True, text=True,
                                timeout=30, env=_env()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    return [op for op in OPERATIONS if op in names]


def _customize_args(operations: list[str]) -> list[str]:
    if "customize" not in operations:
        return []
    args = [arg for name in CLOUD_INIT_STATE for arg in ("--delete", f"/var/lib/cloud/{name}")]
    return [*args, "--write", EMPTY_MACHINE_ID]


def _env() -> dict[str, str]:
    # English messages: condense() looks for virt-sysprep's "error:" lines.
    return {**APPLIANCE_ENV, **os.environ, "LC_ALL": "C.UTF-8"}


def _run(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """Run `argv` in its own process group; on timeout kill the group (QEMU too). (None, output) then."""
    log.info("running %s", " ".join(argv))
    # libguestfs' temporary folder, and its socket folder unless run as root (which always uses /tmp):
    # a killed run would leave them behind. The appliance cache stays in /var/tmp, built once.
    with tempfile.TemporaryDirectory(prefix="webvirt-seal-") as scratch:
        env = {**_env(), "LIBGUESTFS_TMPDIR": scratch, "XDG_RUNTIME_DIR": scratch}
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        return _wait(proc, timeout)


def _wait(proc: subprocess.Popen[str], timeout: float) -> tuple[int | None, str]:
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired as expired:
        os.killpg(proc.pid, signal.SIGKILL)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a child left the group and holds the pipe: stop reading it
            proc.kill()
            proc.wait()
            output = _text(expired.output)
        log.warning("%s stopped after %.0f s: %s", VIRT_SYSPREP, timeout, output[-2000:])
        return None, output


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def condense(output: str, returncode: int) -> str:
    """virt-sysprep's last error as one line: its "error:" line and the lines that continue it."""
    lines = [line.strip() for line in output.splitlines()]
    starts = [i for i, line in enumerate(lines) if "error:" in line]
    if not starts:
        last = next((line for line in reversed(lines) if line), "")
        return f"{VIRT_SYSPREP} failed (exit status {returncode}){': ' + last if last else '.'}"
    block = []
    for line in lines[starts[-1]:]:
        if not line:
            break
        block.append(line)
    message = " ".join(block)
    for cryptic, plain in PLAIN_ERRORS.items():
        if cryptic in message:
            message = plain
    for prefix in (f"{VIRT_SYSPREP}: error: ", "libguestfs error: ", "error: "):
        message = message.removeprefix(prefix)
    return f"{VIRT_SYSPREP}: {message}"
