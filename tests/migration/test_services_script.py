"""scripts/services.sh decides whether the SYSTEM libvirtd and virtlogd run by asking their sockets.

A session daemon (the migration tests' hosts: ``libvirtd`` and ``virtlogd`` of the user
``webvirt-mig``) is a process of the same name, so ``pgrep -x libvirtd`` said "running" and the
system daemon was never started. Here, in new mount, network and pid namespaces where no system
libvirt runs (private /run, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, and a copy of
/etc/libvirt without domains or pools), a session libvirtd and virtlogd are started first; then
services.sh must start the system daemons, and a second run must start nothing. Everything started
in there dies with the namespace's first process; the real system daemons are not touched.

The script runs from a copy in a temporary directory (with REDIS_URL set), so it writes that
directory's .state/env, not the checkout's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.migration.daemons import PATH, ensure_user

pytestmark = [pytest.mark.qemu, pytest.mark.system]

REPO = Path(__file__).resolve().parents[2]

INSIDE = r"""
set -euo pipefail
WORK=$1 USER_NAME=$2
ip link set lo up
mount -t tmpfs tmpfs /run
for d in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; done
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/dnsmasq /var/cache/libvirt/qemu /var/log/libvirt/qemu
cp -a /etc/libvirt "$WORK/etc-libvirt"
rm -rf "$WORK"/etc-libvirt/qemu/*.xml "$WORK"/etc-libvirt/qemu/autostart "$WORK/etc-libvirt/storage"
mount --bind "$WORK/etc-libvirt" /etc/libvirt

S="$WORK/session"
mkdir -p "$S/c" "$S/k" "$S/r"
chown -R "$USER_NAME:" "$S"
chmod 700 "$S/r"
as_user=(runuser -u "$USER_NAME" -- env -i "PATH=$PATH" "HOME=$S" "XDG_CONFIG_HOME=$S/c" "XDG_CACHE_HOME=$S/k" \
         "XDG_RUNTIME_DIR=$S/r")
"${as_user[@]}" libvirtd --daemon
"${as_user[@]}" virtlogd --daemon
for _ in $(seq 100); do [ -S "$S/r/libvirt/libvirt-sock" ] && break; sleep 0.1; done
count() { pgrep -x -u "$1" "$2" | wc -l; }
echo "session: libvirtd $(count "$USER_NAME" libvirtd) virtlogd $(count "$USER_NAME" virtlogd)"
if timeout 5 virsh -c qemu:///system uri >/dev/null 2>&1; then echo "system before: up"
else echo "system before: down"; fi

echo "== run 1"
bash "$WORK/scripts/services.sh" 2>&1 >/dev/null
echo "system after 1: libvirtd $(count root libvirtd) virtlogd $(count root virtlogd)"
timeout 5 virsh -c qemu:///system uri
timeout 5 virt-admin -c virtlogd:///system version >/dev/null && echo "system virtlogd answers"
echo "== run 2"
bash "$WORK/scripts/services.sh" 2>&1 >/dev/null
echo "system after 2: libvirtd $(count root libvirtd) virtlogd $(count root virtlogd)"
"""


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="webvirt-svc-"))
    os.chmod(path, 0o755)  # the session daemon's user passes through to its directories
    (path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "services.sh", path / "scripts" / "services.sh")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_services_starts_the_system_daemons_beside_session_daemons(work: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for namespaces")
    user = ensure_user()
    result = subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private",
         "bash", "-c", INSIDE, "inside", str(work), user.pw_name],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": PATH, "HOME": "/root", "LC_ALL": "C", "REDIS_URL": f"unix://{work}/no-redis.sock"})
    out = result.stdout + result.stderr
    print(out)
    assert result.returncode == 0, out
    assert "session: libvirtd 1 virtlogd 1" in out  # what fooled `pgrep -x libvirtd`
    assert "system before: down" in out
    run1, run2 = out.split("== run 1", 1)[1].split("== run 2", 1)
    assert "services: starting virtlogd" in run1 and "services: starting libvirtd" in run1
    assert "system after 1: libvirtd 1 virtlogd 1" in run1
    assert "qemu:///system" in run1 and "system virtlogd answers" in run1
    assert "services: starting" not in run2, "a second run must not start a second system daemon"
    assert "system after 2: libvirtd 1 virtlogd 1" in run2
