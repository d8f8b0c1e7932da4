"""cloud-init NoCloud seeds on a real guest, on libvirtd with QEMU (qemu:///system).

The tiny guest reads a seed the way cloud-init's NoCloud source does (the CD-ROM labelled cidata,
its meta-data and user-data) and says what it found on its serial port (tests/guest/build.sh). A seed
is made with webvirt.virt.seed, uploaded into a pool through a libvirt stream, attached to the
definition, and deleted with the domain. Domains are defined with plain libvirt, not through the API.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.guest.guest import READY_MARKER, SEED_MARKER, make_overlay, tiny_domain_xml
from tests.guest.serial import SerialShell, seed_report
from tests.integration.conftest import pool_dir
from webvirt.virt import domains, seed

pytestmark = pytest.mark.qemu

BOOT_TIMEOUT = 40.0
KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk alice@laptop",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY bob@desk"]
CONFIG = "#cloud-config\npackages: [vim]\nruncmd:\n  - [sh, -c, 'echo hello']\n"


@pytest.fixture
def booted() -> Iterator[list[SerialShell]]:
    """Shells opened on booted guests, closed afterwards (the guests themselves go with guest_names)."""
    shells: list[SerialShell] = []
    yield shells
    for shell in shells:
        shell.close()


def boot(dom: libvirt.virDomain, shells: list[SerialShell]) -> SerialShell:
    """Start `dom`; its shell once READY is seen. Prints the seconds from the start call to READY."""
    started = time.monotonic()
    dom.create()
    shell = SerialShell(dom)  # the pty exists from the start; the seed line and READY come seconds later
    shells.append(shell)
    shell.wait_for(READY_MARKER, BOOT_TIMEOUT)
    print(f"{dom.name()}: {READY_MARKER} {time.monotonic() - started:.1f} s after the start call")
    return shell


def ready_line(shell: SerialShell) -> str:
    return shell.wait_for_line(READY_MARKER, 5)


def seeded_guest(conn: libvirt.virConnect, image: Path, pool: libvirt.virStoragePool,
                 names: list[str]) -> tuple[libvirt.virDomain, str, str]:
    """A shut-off tiny guest on an overlay in `pool`, with a seed uploaded into `pool` and attached:
    the domain, the seed's path and the hostname the seed gives."""
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    names.append(name)
    uuid = str(uuidlib.uuid4())
    hostname = f"seeded-{uuid[:8]}"
    overlay = make_overlay(image, pool_dir(pool) / f"{name}.qcow2")
    pool.refresh(0)
    text = seed.user_data(CONFIG, KEYS, password_hash=seed.hash_password("exam-2026-secret"), login_user="debian")
    data = seed.seed_iso(seed.Seed(instance_id=uuid, hostname=hostname, user_data=text))
    path = seed.upload_seed(conn, pool.name(), seed.seed_volume_name(name), data)
    assert Path(path).read_bytes() == data  # exactly the ISO: a volume of len(data) bytes, no padding
    xml = seed.attach(tiny_domain_xml(name, str(overlay), uuid=uuid, vnc=False), path)
    return conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE), path, hostname


def test_a_guest_boots_with_its_seeds_instance_id_hostname_and_keys_and_removing_it_deletes_the_seed(
        qemu_conn, guest_image, scratch_pool, guest_names, booted):
    dom, path, hostname = seeded_guest(qemu_conn, guest_image, scratch_pool, guest_names)
    uuid = dom.UUIDString()
    assert seed.seed_paths(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == [path]

    shell = boot(dom, booted)
    assert seed_report(shell) == {"instance-id": uuid, "hostname": hostname, "keys": "2"}
    assert shell.seen.index(SEED_MARKER.encode()) < shell.seen.index(READY_MARKER.encode())
    assert f" hostname={hostname} " in ready_line(shell)
    assert shell.run("hostname").strip() == hostname
    shell.close()

    deleted = domains.remove(qemu_conn, uuid)
    assert path in deleted and f"{dom.name()}.qcow2" in " ".join(deleted)
    scratch_pool.refresh(0)
    assert seed.seed_volume_name(dom.name()) not in scratch_pool.listVolumes()
    assert not Path(path).exists()
    assert dom.name() not in [d.name() for d in qemu_conn.listAllDomains(0)]


def test_a_guest_without_a_seed_says_so_and_keeps_its_own_hostname(qemu_conn, guest_image, workdir, guest_names,
                                                                   booted):
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    guest_names.append(name)
    overlay = make_overlay(guest_image, workdir / f"{name}.qcow2")
    shell = boot(qemu_conn.defineXML(tiny_domain_xml(name, str(overlay), vnc=False)), booted)
    assert seed_report(shell) is None
    assert f"{SEED_MARKER} none\n".encode() in shell.seen
    assert " hostname=webvirt-tiny " in ready_line(shell)


def test_detaching_the_seed_of_a_running_guest_deletes_it_while_the_guest_still_reads_it(
        qemu_conn, guest_image, scratch_pool, guest_names, booted):
    dom, path, _hostname = seeded_guest(qemu_conn, guest_image, scratch_pool, guest_names)
    shell = boot(dom, booted)
    assert seed.detach(qemu_conn, dom.UUIDString()) == path
    assert not Path(path).exists()
    assert seed.seed_paths(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == []
    assert seed.seed_paths(dom.XMLDesc(0)) == [path]  # the running machine keeps its CD-ROM until it stops
    # QEMU holds the unlinked file open: the guest reads the seed's label from the drive, uncached.
    label = shell.run("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/sr0 bs=1 skip=32808 count=6 2>/dev/null")
    assert label == "cidata"
    dom.destroy()
    assert "cidata" not in dom.XMLDesc(0)
