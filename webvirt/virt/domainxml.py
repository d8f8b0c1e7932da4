"""<domain> XML: the parts webvirt shows, edits and writes. Mirrors libvirt's element tree."""

from __future__ import annotations

import builtins
from typing import Any

from webvirt.virt.xmlobj import X, XMLFlag, XMLObject, XMLProperty, size_bytes

MIB = 1024 * 1024


class Disk(XMLObject):
    tag = "disk"
    child_order = ("driver", "source", "backingStore", "target")
    type = XMLProperty[str]("@type")
    device = XMLProperty[str]("@device")
    driver_name = XMLProperty[str]("./driver/@name")
    driver_type = XMLProperty[str]("./driver/@type")
    source_file = XMLProperty[str]("./source/@file")
    source_dev = XMLProperty[str]("./source/@dev")
    source_pool = XMLProperty[str]("./source/@pool")
    source_volume = XMLProperty[str]("./source/@volume")
    target_dev = XMLProperty[str]("./target/@dev")
    target_bus = XMLProperty[str]("./target/@bus")
    tray = XMLProperty[str]("./target/@tray")  # live XML only: "open" or "closed"
    alias = XMLProperty[str]("./alias/@name")  # live XML only: QEMU's device id
    readonly = XMLFlag("./readonly")

    @property
    def source(self) -> str:
        if self.source_pool:
            return f"{self.source_pool}/{self.source_volume}"
        return self.source_file or self.source_dev or ""

    @property
    def is_readonly(self) -> bool:
        return bool(self.readonly)

    def set_media(self, path: str) -> None:
        """Put the file at `path` into this CD-ROM, or eject its medium when `path` is empty."""
        self.remove("./source")  # the whole element: its other attributes belong to the old medium
        if path:
            self.source_file = path


class Interface(XMLObject):
    tag = "interface"
    type = XMLProperty[str]("@type")
    mac = XMLProperty[str]("./mac/@address")
    source_network = XMLProperty[str]("./source/@network")
    source_bridge = XMLProperty[str]("./source/@bridge")
    source_dev = XMLProperty[str]("./source/@dev")
    model = XMLProperty[str]("./model/@type")
    target_dev = XMLProperty[str]("./target/@dev")

    @property
    def source(self) -> str:
        return self.source_network or self.source_bridge or self.source_dev or ""


class Graphics(XMLObject):
    tag = "graphics"
    type = XMLProperty[str]("@type")
    port = XMLProperty[int]("@port", kind=int)
    autoport = XMLProperty[bool]("@autoport", kind=bool)
    listen = XMLProperty[str]("@listen")
    socket = XMLProperty[str]("@socket")

    @property
    def has_password(self) -> bool:
        # The password itself is never read into webvirt's pages.
        return self.node.get("passwd") is not None


class Video(XMLObject):
    tag = "video"
    model = XMLProperty[str]("./model/@type")


class CharDevice(XMLObject):
    """A serial port or a console: a character device of some type (pty, unix...)."""

    type = XMLProperty[str]("@type")


class Serial(CharDevice):
    tag = "serial"


class Console(CharDevice):
    tag = "console"


class Input(XMLObject):
    tag = "input"
    type = XMLProperty[str]("@type")
    bus = XMLProperty[str]("@bus")


class Boot(XMLObject):
    tag = "boot"
    dev = XMLProperty[str]("@dev")


class Domain(XMLObject):
    tag = "domain"
    type = XMLProperty[str]("@type")
    name = XMLProperty[str]("./name")
    uuid = XMLProperty[str]("./uuid")
    title = XMLProperty[str]("./title")
    description = XMLProperty[str]("./description")
    vcpus = XMLProperty[int]("./vcpu", kind=int)
    arch = XMLProperty[str]("./os/type/@arch")
    machine = XMLProperty[str]("./os/type/@machine")
    os_type = XMLProperty[str]("./os/type")
    firmware = XMLProperty[str]("./os/@firmware")
    loader_type = XMLProperty[str]("./os/loader/@type")
    nvram = XMLProperty[str]("./os/nvram")
    emulator = XMLProperty[str]("./devices/emulator")
    acpi = XMLFlag("./features/acpi")
    apic = XMLFlag("./features/apic")
    clock_offset = XMLProperty[str]("./clock/@offset")
    on_poweroff = XMLProperty[str]("./on_poweroff")
    on_reboot = XMLProperty[str]("./on_reboot")
    on_crash = XMLProperty[str]("./on_crash")

    @property
    def memory_mib(self) -> int:
        return size_bytes(self.node.find("./memory"), default_unit="KiB") // MIB

    @memory_mib.setter
    def memory_mib(self, value: int) -> None:
        node = self.element("./memory")
        node.set("unit", "MiB")
        node.text = str(value)

    def add_device(self, cls: builtins.type[X], **values: Any) -> X:  # in this class, `type` is <domain type=>
        """A new device (a Disk, an Interface...) at the end of <devices>."""
        return self.add(cls, "./devices", **values)

    @property
    def disks(self) -> list[Disk]:
        return self.children("./devices/disk", Disk)

    @property
    def interfaces(self) -> list[Interface]:
        return self.children("./devices/interface", Interface)

    @property
    def graphics(self) -> list[Graphics]:
        return self.children("./devices/graphics", Graphics)

    @property
    def boot_devices(self) -> list[str]:
        return [node.get("dev", "") for node in self.node.findall("./os/boot")]

    @property
    def uefi(self) -> bool:
        """Boots with UEFI firmware, whose variables live in an NVRAM file beside the disks."""
        return self.firmware == "efi" or self.loader_type == "pflash" or self.node.find("./os/nvram") is not None

    @property
    def writable_disks(self) -> list[Disk]:
        """The disks a snapshot or a clone is about: hard disks, not CD-ROMs or read-only or shared ones."""
        return [d for d in self.disks if d.device in (None, "disk") and not d.is_readonly
                and d.node.find("./shareable") is None]

    @property
    def graphics_type(self) -> str:
        kinds = [g.type for g in self.graphics if g.type]
        return kinds[0] if kinds else ""
