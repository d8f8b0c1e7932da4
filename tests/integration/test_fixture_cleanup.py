"""The integration fixtures clean up on a connection that works, and say so when they cannot.

tests/events restarts libvirtd, which kills the session's connection to qemu:///system: a cleanup on
that dead connection used to fail silently and leave its pools behind, run after run. Here the
session's connection goes through a relay (socat) to libvirtd's socket, and the relay is killed in
the middle of the test: the client sees its connection end as a restart ends it, without the daemon
restarting under everyone else's feet. The next test checks, on a connection of its own, that the
fixtures removed everything anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration import conftest
from tests.integration.conftest import QEMU_URI, remove_domains

pytestmark = pytest.mark.system
left: dict[str, str] = {}  # what the first test made, for the second to look for


def domain_xml(name: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            "<os><type arch='x86_64'>hvm</type></os><devices/></domain>")


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """The session's connection, for this test, through a relay to libvirtd's socket: the relay."""
    sock = tmp_path / "relay.sock"
    relay = subprocess.Popen(["socat", f"UNIX-LISTEN:{sock},fork", "UNIX-CONNECT:/run/libvirt/libvirt-sock"],
                             start_new_session=True)
    deadline = time.monotonic() + 5
    while not sock.exists():
        assert time.monotonic() < deadline and relay.poll() is None, "socat did not start"
        time.sleep(0.02)
    conftest._session["conn"] = libvirt.open(f"qemu+unix:///system?socket={sock}")
    yield relay
    if relay.poll() is None:
        os.killpg(relay.pid, signal.SIGKILL)
    relay.wait()


# `relayed` comes first: scratch_pool and clone_prefix then start on the relayed connection.
def test_the_fixtures_outlive_the_sessions_connection(relayed: subprocess.Popen, qemu_conn: libvirt.virConnect,
                                                      scratch_pool: Any, clone_prefix: str) -> None:
    qemu_conn.defineXML(domain_xml(f"{clone_prefix}a"))
    left.update(pool=scratch_pool.name(), prefix=clone_prefix)
    os.killpg(relayed.pid, signal.SIGKILL)  # as a libvirtd restart leaves it: every call on it fails now
    relayed.wait()
    with pytest.raises(libvirt.libvirtError):
        scratch_pool.info()


def test_what_they_made_is_gone_after_that() -> None:
    assert left, "the test above must run first"
    conn = libvirt.open(QEMU_URI)
    try:
        assert left["pool"] not in conn.listStoragePools() + conn.listDefinedStoragePools()
        assert not [d.name() for d in conn.listAllDomains(0) if d.name().startswith(left["prefix"])]
    finally:
        conn.close()


def test_a_domain_that_cannot_be_removed_fails_the_cleanup_loudly(qemu_conn: libvirt.virConnect) -> None:
    """libvirt refuses to undefine a domain that has snapshots: the cleanup must say so, not pass."""
    prefix = "wvc-loud-"
    dom = qemu_conn.defineXML(domain_xml(f"{prefix}a"))
    inside = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.snapshotCreateXML(f"<domainsnapshot><name>s1</name><state>shutoff</state><creationTime>1</creationTime>"
                          f"<memory snapshot='no'/>{inside}</domainsnapshot>",
                          libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    try:
        with pytest.raises(pytest.fail.Exception, match="cannot delete inactive domain with 1 snapshots"):
            remove_domains(qemu_conn, prefix)
    finally:
        for snap in dom.listAllSnapshots(0):
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        dom.undefine()
