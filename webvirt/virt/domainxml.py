"""<domain> XML: the parts webvirt shows and edits. Mirrors libvirt's element tree."""

from __future__ import annotations

from webvirt.virt.xmlobj import XMLObject, XMLProperty

_UNIT_TO_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024, "m": 1024, "mib": 1024,
                "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2, "gb": 1000**3 / 1024, "t": 1024**3,
                "tib": 1024**3}


class Disk(XMLObject):
    tag = "disk"
    type = XMLProperty[str]("@type")
    device = XMLProperty[str]("@device")
    driver_type = XMLProperty[str]("./driver/@type")
    source_file = XMLProperty[str]("./source/@file")
    source_dev = XMLProperty[str]("./source/@dev")
    source_pool = XMLProperty[str]("./source/@pool")
    source_volume = XMLProperty[str]("./source/@volume")
    target_dev = XMLProperty[str]("./target/@dev")
    target_bus = XMLProperty[str]("./target/@bus")
    tray = XMLProperty[str]("./target/@tray")  # live XML only: "open" or "closed"
    alias = XMLProperty[str]("./alias/@name")  # live XML only: QEMU's device id

    @property
    def source(self) -> str:
        if self.source_pool:
            return f"{self.source_pool}/{self.source_volume}"
        return self.source_file or self.source_dev or ""

    @property
    def is_readonly(self) -> bool:
        return self.node.find("./readonly") is not None


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
    emulator = XMLProperty[str]("./devices/emulator")

    @property
    def memory_mib(self) -> int:
        node = self.node.find("./memory")
        if node is None or not (node.text or "").strip():
            return 0
        unit = (node.get("unit") or "KiB").lower()
        return int(int(node.text.strip()) * _UNIT_TO_KIB.get(unit, 1) // 1024)

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
    def graphics_type(self) -> str:
        kinds = [g.type for g in self.graphics if g.type]
        return kinds[0] if kinds else ""
