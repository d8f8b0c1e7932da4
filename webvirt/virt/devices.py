"""Attaching and detaching a domain's disks and network interfaces, and changing CD-ROM media.

Each change reaches the running domain (VIR_DOMAIN_AFFECT_LIVE) and its persistent definition
(VIR_DOMAIN_AFFECT_CONFIG), as far as the domain's state allows.
"""

from __future__ import annotations

import json
import time

import libvirt

from webvirt.virt import domains as virt_domains
from webvirt.virt import errors
from webvirt.virt.domainxml import Disk, Interface
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.storagexml import Volume

BUSES = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


def _flags(dom: libvirt.virDomain) -> int:
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def _doc(dom: libvirt.virDomain) -> DomainXML:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() and not dom.isActive() else 0
    return DomainXML.from_string(dom.XMLDesc(flags))


def next_target(doc: DomainXML, bus: str) -> str:
    prefix = BUSES.get(bus, "vd")
    used = {d.target_dev for d in doc.disks}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in used:
            return prefix + letter
    raise VirtError(f"The domain has no free {bus} disk slot left.", errors.CONFLICT)


def _run(dom: libvirt.virDomain, verb: str, fn: str, xml: str, extra_flags: int = 0) -> None:
    try:
        getattr(dom, fn)(xml, _flags(dom) | extra_flags)
    except libvirt.libvirtError as exc:
        failure = errors.from_libvirt(exc)
        raise VirtError(f"libvirt could not {verb}: {failure.message}", failure.kind, detail=str(exc)) from None


def attach_volume(conn: libvirt.virConnect, uuid: str, volume_path: str, bus: str = "virtio",
                  readonly: bool = False) -> str:
    """Attach a volume (by path) as a disk; returns the target device it got (vdb, sdc...)."""
    if bus not in BUSES:
        raise VirtError(f"'{bus}' is not a disk bus webvirt offers. Use one of: {', '.join(BUSES)}.", errors.INVALID)
    dom = virt_domains.lookup(conn, uuid)
    try:
        vol = conn.storageVolLookupByPath(volume_path)
    except libvirt.libvirtError:
        raise VirtError(f"No storage pool on this host has a volume at {volume_path}.", errors.NOT_FOUND) from None
    doc = _doc(dom)
    if any(d.source == volume_path for d in doc.disks):
        raise VirtError(f"{dom.name()} already has {volume_path} as a disk.", errors.CONFLICT)
    fmt = Volume.from_string(vol.XMLDesc(0)).format or "raw"
    target = next_target(doc, bus)
    disk = volume_disk(volume_path, fmt, target, bus, readonly)
    _run(dom, f"attach {volume_path} to {dom.name()}", "attachDeviceFlags", disk.to_string())
    return target


def volume_disk(path: str, fmt: str, target: str, bus: str, readonly: bool = False) -> Disk:
    """The <disk> of a volume attached by path: a block device under /dev, else a file."""
    block = path.startswith("/dev/")
    return Disk.new(type="block" if block else "file", device="disk", driver_name="qemu", driver_type=fmt,
                    source_dev=path if block else None, source_file=None if block else path,
                    target_dev=target, target_bus=bus, readonly=readonly)


def detach_disk(conn: libvirt.virConnect, uuid: str, target: str) -> str:
    dom = virt_domains.lookup(conn, uuid)
    for disk in _doc(dom).disks:
        if disk.target_dev == target:
            _run(dom, f"detach disk {target} from {dom.name()}", "detachDeviceFlags", disk.to_string())
            return disk.source
    raise VirtError(f"{dom.name()} has no disk {target}.", errors.NOT_FOUND)


def attach_interface(conn: libvirt.virConnect, uuid: str, network: str, model: str = "virtio",
                     mac: str = "") -> str:
    """Attach a network interface on libvirt network `network`; returns its MAC address."""
    dom = virt_domains.lookup(conn, uuid)
    try:
        conn.networkLookupByName(network)
    except libvirt.libvirtError:
        raise VirtError(f"The host has no network named '{network}'.", errors.NOT_FOUND) from None
    before = {i.mac for i in _doc(dom).interfaces}
    _run(dom, f"attach an interface on {network} to {dom.name()}", "attachDeviceFlags",
         network_interface(network, model, mac).to_string())
    added = [i.mac for i in _doc(dom).interfaces if i.mac not in before]
    return added[0] if added else mac


def network_interface(network: str, model: str = "virtio", mac: str = "") -> Interface:
    """The <interface> of a NIC on a libvirt network; without a MAC address libvirt picks one."""
    return Interface.new(type="network", mac=mac.strip().lower() or None, source_network=network,
                         model=model or "virtio")


def detach_interface(conn: libvirt.virConnect, uuid: str, mac: str) -> str:
    dom = virt_domains.lookup(conn, uuid)
    for iface in _doc(dom).interfaces:
        if (iface.mac or "").lower() == mac.strip().lower():
            _run(dom, f"detach interface {mac} from {dom.name()}", "detachDeviceFlags", iface.to_string())
            return iface.source
    raise VirtError(f"{dom.name()} has no interface with MAC address {mac}.", errors.NOT_FOUND)


MEDIA_SECONDS = 30.0


def change_media(conn: libvirt.virConnect, uuid: str, target: str, iso_path: str = "") -> None:
    """Put an ISO (by path) into CD-ROM `target`, or eject it when `iso_path` is empty."""
    dom = virt_domains.lookup(conn, uuid)
    for disk in _doc(dom).disks:
        if disk.target_dev == target:
            if disk.device != "cdrom":
                raise VirtError(f"{target} of {dom.name()} is a {disk.device or 'disk'}, not a CD-ROM.",
                                errors.INVALID)
            break
    else:
        raise VirtError(f"{dom.name()} has no CD-ROM {target}.", errors.NOT_FOUND)
    if iso_path:
        try:
            conn.storageVolLookupByPath(iso_path)
        except libvirt.libvirtError:
            raise VirtError(f"No storage pool on this host has a volume at {iso_path}.", errors.NOT_FOUND) from None
    disk.set_media(iso_path)
    verb = f"put {iso_path} into {target}" if iso_path else f"eject {target}"
    # A booting guest may hold the tray shut; QEMU then refuses the new medium ("Tray of the
    # device is not open"). Forcing the change opens it, as the guest's eject button would.
    force = libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE if dom.isActive() else 0
    # The tray opens asynchronously, and firmware that is still probing the drive closes it again:
    # keep trying for up to 25 s (the caller allows MEDIA_SECONDS for the whole change).
    deadline = time.monotonic() + MEDIA_SECONDS - 5
    while True:
        try:
            _run(dom, f"{verb} of {dom.name()}", "updateDeviceFlags", disk.to_string(), force)
            return
        except VirtError as exc:
            if "tray" not in exc.detail.lower() or time.monotonic() > deadline:
                raise
            _resync_tray(dom, target)
            time.sleep(1)


def _resync_tray(dom: libvirt.virDomain, target: str) -> None:
    """Open a CD-ROM tray that libvirt wrongly believes open, so the next media change can work.

    libvirt 9 reads the trays' state at domain start while the firmware may be moving them; when
    it keeps a stale "open" it never opens the tray again before removing the medium, and every
    change fails with "Tray ... is not open" until libvirtd restarts. Only QEMU's own
    blockdev-open-tray reaches the tray then (seen on Debian 12's libvirt 9.0 and QEMU 7.2).
    """
    live = DomainXML.from_string(dom.XMLDesc(0))
    disk = next((d for d in live.disks if d.target_dev == target), None)
    if disk is None or not disk.alias or disk.tray != "open":
        return
    try:
        import libvirt_qemu

        command = {"execute": "blockdev-open-tray", "arguments": {"id": disk.alias, "force": True}}
        libvirt_qemu.qemuMonitorCommand(dom, json.dumps(command), 0)
    except (ImportError, libvirt.libvirtError):
        pass  # not a QEMU domain or no monitor access: the caller's retry reports the failure
