"""Domain XML from a few settings: what virt-install writes for a new machine or a template."""

from __future__ import annotations

from dataclasses import dataclass, field

from webvirt.virt.domainxml import Boot, Console, Disk, Domain, Graphics, Input, Interface, Serial, Video


@dataclass
class DiskSpec:
    path: str
    format: str = "qcow2"
    device: str = "disk"  # or "cdrom"
    bus: str = "virtio"
    target: str = "vda"
    readonly: bool = False


@dataclass
class DomainSpec:
    name: str
    vcpus: int = 1
    memory_mib: int = 1024
    domain_type: str = "kvm"  # "qemu" where the host offers no KVM
    arch: str = "x86_64"
    disks: list[DiskSpec] = field(default_factory=list)
    network: str = ""  # a libvirt network name; empty: no interface
    graphics: str = "vnc"  # "vnc", "spice" or "none"
    boot: list[str] = field(default_factory=lambda: ["hd"])
    description: str = ""


def _add_disk(doc: Domain, spec: DiskSpec) -> None:
    doc.add_device(Disk, type="file", device=spec.device, driver_name="qemu", driver_type=spec.format,
                   source_file=spec.path, target_dev=spec.target, target_bus=spec.bus,
                   readonly=spec.readonly or spec.device == "cdrom")


def domain_xml(spec: DomainSpec) -> str:
    doc = Domain.new(type=spec.domain_type, name=spec.name, memory_mib=spec.memory_mib, vcpus=spec.vcpus,
                     arch=spec.arch, machine="pc", os_type="hvm")
    for dev in spec.boot:
        doc.add(Boot, "./os", dev=dev)
    doc.set(acpi=True, apic=True, clock_offset="utc", on_poweroff="destroy", on_reboot="restart", on_crash="destroy")
    for disk in spec.disks:
        _add_disk(doc, disk)
    if spec.network:
        doc.add_device(Interface, type="network", source_network=spec.network, model="virtio")
    if spec.graphics in ("vnc", "spice"):
        doc.add_device(Graphics, type=spec.graphics, autoport=True, listen="127.0.0.1")
        doc.add_device(Video, model="vga")
    doc.add_device(Serial, type="pty")
    doc.add_device(Console, type="pty")
    doc.add_device(Input, type="tablet", bus="usb")
    if spec.description:
        doc.description = spec.description
    return doc.to_string()
