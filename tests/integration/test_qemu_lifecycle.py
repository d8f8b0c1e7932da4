"""A real guest's whole life through the REST API, on libvirtd with QEMU (qemu:///system).

Define, start (and see it boot), suspend, resume, shut down by ACPI, start again, force off, and
undefine with its volume deleted. After every step libvirt itself is asked whether it agrees.
"""

from __future__ import annotations

import os
import re
import select
import termios
import time
import tty
import uuid as uuidlib

import libvirt
import pytest
from lxml import etree

from tests.guest.guest import READY_MARKER, make_overlay, tiny_domain_xml

pytestmark = pytest.mark.qemu

BOOT_TIMEOUT = 40.0
ACPI_TIMEOUT = 20.0


class SerialPty:
    """The guest's serial port, read from the host side of the pty that libvirt gave it."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)  # no echo: nothing we read goes back to the guest
        self.seen = bytearray()

    def wait_for(self, text: str, timeout: float) -> float:
        """Read until `text` appears; return the seconds it took."""
        started = time.monotonic()
        while text.encode() not in self.seen:
            left = started + timeout - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen on the serial port in {timeout:g} s; it showed:\n"
                                     + self.seen.decode(errors="replace")[-2000:])
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except (BlockingIOError, OSError):
                    time.sleep(0.05)
        return time.monotonic() - started

    def close(self) -> None:
        os.close(self.fd)


def libvirt_state(dom: libvirt.virDomain) -> int:
    return dom.state()[0]


def wait_for_state(dom: libvirt.virDomain, state: int, timeout: float) -> float:
    started = time.monotonic()
    while libvirt_state(dom) != state:
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def serial_pty_path(api, pk: int) -> str:  # type: ignore[no-untyped-def]
    """The pty of the running guest's first serial port, from its live XML as the API returns it."""
    response = api.get(f"/api/v1/domains/{pk}/xml/")
    assert response.status_code == 200, response.json()
    paths = etree.fromstring(response.json()["xml"].encode()).xpath("./devices/serial[@type='pty']/source/@path")
    assert paths, "the running guest has no serial pty"
    return str(paths[0])


def wait_for_boot(api, pk: int) -> float:  # type: ignore[no-untyped-def]
    serial = SerialPty(serial_pty_path(api, pk))
    try:
        return serial.wait_for(READY_MARKER, BOOT_TIMEOUT)
    finally:
        serial.close()


def act(api, pk: int, verb: str) -> dict:  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/domains/{pk}/{verb}/")
    assert response.status_code == 200, f"{verb}: {response.json()}"
    return response.json()


@pytest.mark.qemu
def test_a_guest_lives_its_whole_life_through_the_api(  # type: ignore[no-untyped-def]
        api, qemu_conn, qemu_host, guest_image, scratch_pool, guest_names):
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    guest_names.append(name)
    pool_dir = etree.fromstring(scratch_pool.XMLDesc(0)).findtext("./target/path")
    overlay = make_overlay(guest_image, os.path.join(pool_dir, f"{name}.qcow2"))
    scratch_pool.refresh(0)
    assert scratch_pool.storageVolLookupByName(overlay.name).path() == str(overlay)

    # Define through the API: a persistent, shut-off, emulated guest without a network interface.
    response = api.post("/api/v1/domains/", {"host": qemu_host.pk, "xml": tiny_domain_xml(name, str(overlay))},
                        format="json")
    assert response.status_code == 201, response.json()
    row = response.json()
    pk = row["id"]
    assert (row["name"], row["state"], row["persistent"], row["host"]) == (name, "shutoff", True, qemu_host.pk)
    dom = qemu_conn.lookupByName(name)
    assert dom.UUIDString() == row["uuid"]
    defined = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    assert defined.get("type") == "qemu"  # TCG: a Linux guest hangs under KVM on these machines
    assert defined.find("./devices/interface") is None

    # Start: running, as libvirt agrees, and the guest really boots.
    assert act(api, pk, "start")["state"] == "running"
    assert libvirt_state(dom) == libvirt.VIR_DOMAIN_RUNNING
    boot_seconds = wait_for_boot(api, pk)
    print(f"{READY_MARKER} {boot_seconds:.1f} s after the start call returned")

    # Suspend and resume.
    assert act(api, pk, "suspend")["state"] == "paused"
    assert libvirt_state(dom) == libvirt.VIR_DOMAIN_PAUSED
    assert act(api, pk, "resume")["state"] == "running"
    assert libvirt_state(dom) == libvirt.VIR_DOMAIN_RUNNING

    # Shut down: an ACPI power-button press, which the tiny guest obeys by powering off.
    act(api, pk, "shutdown")
    waited = wait_for_state(dom, libvirt.VIR_DOMAIN_SHUTOFF, ACPI_TIMEOUT)
    assert libvirt_state(dom) == libvirt.VIR_DOMAIN_SHUTOFF, f"the guest ignored ACPI for {ACPI_TIMEOUT:g} s"
    print(f"ACPI shutdown took {waited:.1f} s")
    assert dom.state()[1] == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN

    # Start again (the API checks libvirt's state, not a possibly stale cache), then force it off.
    assert act(api, pk, "start")["state"] == "running"
    wait_for_boot(api, pk)
    row = act(api, pk, "destroy")
    assert (row["state"], row["reason"]) == ("shutoff", "destroyed")
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert api.get(f"/api/v1/domains/{pk}/").json()["state"] == "shutoff"

    # Undefine and delete its volume: the definition, the overlay and the cache row are gone.
    response = api.delete(f"/api/v1/domains/{pk}/?delete_volumes=true")
    assert response.status_code == 200, response.json()
    assert response.json() == {"deleted_volumes": [str(overlay)]}
    assert not overlay.exists()
    with pytest.raises(libvirt.libvirtError):
        qemu_conn.lookupByName(name)
    assert api.get(f"/api/v1/domains/{pk}/").status_code == 404
    assert guest_image.exists()  # the base image is never touched


@pytest.mark.qemu
def test_undefining_a_running_guest_is_refused_and_changes_nothing(  # type: ignore[no-untyped-def]
        api, qemu_conn, qemu_host, guest_image, scratch_pool, guest_names):
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    guest_names.append(name)
    pool_dir = etree.fromstring(scratch_pool.XMLDesc(0)).findtext("./target/path")
    overlay = make_overlay(guest_image, os.path.join(pool_dir, f"{name}.qcow2"))
    scratch_pool.refresh(0)
    row = api.post("/api/v1/domains/", {"host": qemu_host.pk, "xml": tiny_domain_xml(name, str(overlay), vnc=False)},
                   format="json").json()
    act(api, row["id"], "start")

    response = api.delete(f"/api/v1/domains/{row['id']}/?delete_volumes=true")
    assert response.status_code == 409
    assert re.search(r"is running\. Force it off", response.json()["error"])
    assert qemu_conn.lookupByName(name).isActive()
    assert overlay.exists()
