"""libvirtd stops and starts again: the host goes offline and back online, and the cache catches up.

qemu:///system is used because its domains outlive a restart of libvirtd (the test driver's do not).
While libvirtd is down, one domain's definition file is written into /etc/libvirt/qemu and another's
is deleted: libvirtd loads and forgets them when it starts, so the watcher can only learn of them by
resynchronising after it reconnects.

Restarting libvirtd also closes every other connection to it, so this module runs before all other
tests (see conftest.py); the session's test-driver connection (`test_conn`) would reopen itself anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests import live
from tests.events.sockets import domain_event, host_event
from tests.live import wait_for
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

RESTARTS_LIBVIRTD = True  # Run first: see conftest.py.
pytestmark = pytest.mark.system
QEMU_URI = "qemu:///system"
CONFIG_DIR = Path("/etc/libvirt/qemu")
PID_FILE = Path("/run/libvirtd.pid")
# Limits for a host that never goes offline or never comes back, not speed figures: on a quiet machine
# it goes offline in a few seconds (a keepalive unanswered) and is back within a second or two of
# libvirtd answering, but a loaded one, or the watcher's reconnection backoff, can take much longer.
OFFLINE_WITHIN = live.EVENT_TIMEOUT
ONLINE_WITHIN = live.EVENT_TIMEOUT


def throwaway_xml(name: str, uuid: str) -> str:
    """A domain that is only ever defined: emulated, no disks, never started."""
    return f"""<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"""


def libvirtd_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_libvirtd() -> None:
    pid = libvirtd_pid()
    assert pid is not None, "libvirtd is not running"
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=20, interval=0.1)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, interval=0.1)


def start_libvirtd() -> libvirt.virConnect:
    """Start libvirtd (as scripts/services.sh does) and return a connection once it answers."""
    Path("/run/libvirt").mkdir(parents=True, exist_ok=True)
    subprocess.run(["libvirtd", "-d"], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True, timeout=30)

    def connected() -> libvirt.virConnect | None:
        try:
            return libvirt.open(QEMU_URI)
        except libvirt.libvirtError:
            return None

    return wait_for(connected, timeout=30, interval=0.05)


@pytest.fixture
def qemu_domains() -> Iterator[dict[str, str]]:
    """Names and UUIDs of throwaway domains on qemu:///system; all undefined after the test."""
    made: dict[str, str] = {}
    yield made
    if libvirtd_pid() is None:
        start_libvirtd().close()
    conn = libvirt.open(QEMU_URI)
    for name in made:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).undefine()
        (CONFIG_DIR / f"{name}.xml").unlink(missing_ok=True)
    conn.close()


def cached(host: Host, uuid: str) -> bool:
    return Domain.objects.filter(host=host, uuid=uuid).exists()


@pytest.mark.django_db(transaction=True)
def test_a_host_whose_libvirtd_restarts_goes_offline_comes_back_and_its_cache_catches_up(
        live_stack, admin, event_socket, qemu_domains):  # type: ignore[no-untyped-def]
    tag = uuidlib.uuid4().hex[:8]
    kept, gone, new = (f"webvirt-ev-{tag}-{role}" for role in ("kept", "gone", "new"))
    for name in (kept, gone, new):
        qemu_domains[name] = str(uuidlib.uuid4())
    conn = libvirt.open(QEMU_URI)
    for name in (kept, gone):
        conn.defineXML(throwaway_xml(name, qemu_domains[name]))
    # The new domain's file is written the way libvirt writes its own: the full inactive definition.
    new_xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{qemu_domains[new]}</uuid>",
                     conn.lookupByName(kept).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(kept, new))
    conn.close()

    sock = event_socket(admin)
    host = Host.objects.create(name="qemu-system", uri=QEMU_URI)
    # Not what is measured: a first resynchronisation may wait on another user's busy domain.
    sock.wait(host_event(host.pk, "online"), timeout=40)
    wait_for(lambda: cached(host, qemu_domains[kept]) and cached(host, qemu_domains[gone]),
             timeout=live.EVENT_TIMEOUT)

    mark = sock.mark()
    stop_libvirtd()
    stopped_at = time.monotonic()
    offline = sock.wait(host_event(host.pk, "offline"), after=mark, timeout=OFFLINE_WITHIN)
    assert time.monotonic() - stopped_at < OFFLINE_WITHIN
    assert offline["reason"]
    host.refresh_from_db()
    assert host.status == Host.OFFLINE and host.status_reason  # The reason follows each failed reconnection.

    (CONFIG_DIR / f"{new}.xml").write_text(new_xml)
    (CONFIG_DIR / f"{gone}.xml").unlink()
    start_libvirtd().close()
    back_at = time.monotonic()
    sock.wait(host_event(host.pk, "online"), after=mark, timeout=ONLINE_WITHIN)
    assert time.monotonic() - back_at < ONLINE_WITHIN
    host.refresh_from_db()
    assert (host.status, host.status_reason) == (Host.ONLINE, "")

    sock.wait(domain_event(qemu_domains[new], "shutoff"), after=mark, timeout=live.EVENT_TIMEOUT)
    sock.wait(domain_event(qemu_domains[gone], "removed"), after=mark, timeout=live.EVENT_TIMEOUT)
    assert cached(host, qemu_domains[kept]) and cached(host, qemu_domains[new])
    assert not cached(host, qemu_domains[gone])
