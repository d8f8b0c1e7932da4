"""Domain XML from a few settings: what virt-install writes for a new machine or a template."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from lxml import etree


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


def _disk(spec: DiskSpec) -> str:
    readonly = "<readonly/>" if spec.readonly or spec.device == "cdrom" else ""
    return (f"<disk type='file' device={quoteattr(spec.device)}><driver name='qemu' type={quoteattr(spec.format)}/>"
            f"<source file={quoteattr(spec.path)}/><target dev={quoteattr(spec.target)} bus={quoteattr(spec.bus)}/>"
            f"{readonly}</disk>")


def domain_xml(spec: DomainSpec) -> str:
    disks = "".join(_disk(d) for d in spec.disks)
    boot = "".join(f"<boot dev={quoteattr(dev)}/>" for dev in spec.boot)
    nic = (f"<interface type='network'><source network={quoteattr(spec.network)}/><model type='virtio'/></interface>"
           if spec.network else "")
    graphics = (f"<graphics type={quoteattr(spec.graphics)} autoport='yes' listen='127.0.0.1'/>"
                "<video><model type='vga'/></video>" if spec.graphics in ("vnc", "spice") else "")
    xml = (f"<domain type={quoteattr(spec.domain_type)}><name></name><memory unit='MiB'>{spec.memory_mib}</memory>"
           f"<vcpu>{spec.vcpus}</vcpu><os><type arch={quoteattr(spec.arch)} machine='pc'>hvm</type>{boot}</os>"
           "<features><acpi/><apic/></features><clock offset='utc'/>"
           "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
           f"<devices>{disks}{nic}{graphics}<serial type='pty'/><console type='pty'/>"
           "<input type='tablet' bus='usb'/></devices></domain>")
    root = etree.fromstring(xml.encode())
    root.find("./name").text = spec.name  # set as text, so any name is escaped correctly
    if spec.description:
        etree.SubElement(root, "description").text = spec.description
    return etree.tostring(root, encoding="unicode")
