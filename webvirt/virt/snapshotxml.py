"""<domainsnapshot> XML: what a snapshot records, and the new snapshots webvirt asks libvirt for."""

from __future__ import annotations

from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.xmlobj import XMLObject, XMLProperty


class SnapshotDisk(XMLObject):
    """One disk of a snapshot: `snapshot` is internal, external (a new overlay at `source_file`) or no."""

    tag = "disk"
    name = XMLProperty[str]("@name")
    snapshot = XMLProperty[str]("@snapshot")
    type = XMLProperty[str]("@type")
    driver_type = XMLProperty[str]("./driver/@type")
    source_file = XMLProperty[str]("./source/@file")


class DomainSnapshot(XMLObject):
    tag = "domainsnapshot"
    child_order = ("name", "description", "state", "parent", "creationTime", "memory", "disks", "domain")
    name = XMLProperty[str]("./name")
    description = XMLProperty[str]("./description")
    # The domain's state when it was taken: running, paused, shutoff, or disk-snapshot (disks only).
    state = XMLProperty[str]("./state")
    parent = XMLProperty[str]("./parent/name")
    created = XMLProperty[int]("./creationTime", kind=int)
    memory_snapshot = XMLProperty[str]("./memory/@snapshot")

    @property
    def disks(self) -> list[SnapshotDisk]:
        return self.children("./disks/disk", SnapshotDisk)

    def add_disk(self, **values: str) -> SnapshotDisk:
        return self.add(SnapshotDisk, "./disks", **values)

    @property
    def external_files(self) -> dict[str, str]:
        """disk target -> the overlay made when the snapshot was taken (it holds what was written after)."""
        return {d.name or "": d.source_file for d in self.disks if d.snapshot == "external" and d.source_file}

    @property
    def kind(self) -> str:
        return "external" if self.external_files or self.memory_snapshot == "external" else "internal"

    @property
    def memory(self) -> bool:
        return self.memory_snapshot in ("internal", "external")

    @property
    def domain(self) -> DomainXML | None:
        node = self.node.find("./domain")
        return DomainXML(node) if node is not None else None
