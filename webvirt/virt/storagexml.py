"""<pool> and <volume> XML as objects, and the new pools and volumes webvirt writes.

Reading and changing pools is in webvirt.virt.storage; changing volumes in webvirt.virt.volumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.xmlobj import XMLObject, XMLProperty, XMLSize

POOL_TYPES = ("dir", "netfs", "logical", "iscsi", "disk")
POOL_LABELS = {"dir": "directory", "netfs": "network file system (NFS)", "logical": "LVM volume group",
               "iscsi": "iSCSI target", "disk": "whole disk (partitions)", "fs": "file system", "scsi": "SCSI",
               "mpath": "multipath"}
FILE_POOLS = ("dir", "fs", "netfs")
VOLUME_FORMATS = ("qcow2", "raw")
MIB = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


# XML --------------------------------------------------------------------------------------------

class Pool(XMLObject):
    tag = "pool"
    type = XMLProperty[str]("@type")
    name = XMLProperty[str]("./name")
    uuid = XMLProperty[str]("./uuid")
    target_path = XMLProperty[str]("./target/path")
    source_host = XMLProperty[str]("./source/host/@name")
    source_dir = XMLProperty[str]("./source/dir/@path")
    source_device = XMLProperty[str]("./source/device/@path")
    source_name = XMLProperty[str]("./source/name")
    source_format = XMLProperty[str]("./source/format/@type")

    @property
    def source(self) -> str:
        if self.source_host:
            return f"{self.source_host}:{self.source_dir or self.source_device or ''}"
        return self.source_device or self.source_name or self.source_dir or ""


class Volume(XMLObject):
    tag = "volume"
    name = XMLProperty[str]("./name")
    key = XMLProperty[str]("./key")
    capacity = XMLSize("./capacity")
    allocation = XMLSize("./allocation")
    path = XMLProperty[str]("./target/path")
    format = XMLProperty[str]("./target/format/@type")
    compat = XMLProperty[str]("./target/compat")  # qcow2's version: 1.1 is qcow2v3
    permissions_mode = XMLProperty[str]("./target/permissions/mode")
    backing_path = XMLProperty[str]("./backingStore/path")
    backing_format = XMLProperty[str]("./backingStore/format/@type")


# Building ---------------------------------------------------------------------------------------

@dataclass
class PoolSpec:
    """What the create form asks for; which fields matter depends on the type."""

    name: str
    type: str = "dir"
    target_path: str = ""  # dir, netfs (mount point), iscsi (/dev/disk/by-path), disk (/dev)
    source_host: str = ""  # netfs, iscsi
    source_path: str = ""  # netfs: the export; iscsi: the target IQN; disk and logical: a device
    source_name: str = ""  # logical: the volume group's name


def check_name(name: str, what: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise VirtError(f"'{name}' is not a usable {what} name: use letters, digits, '.', '_', '+' and '-', "
                        "starting with a letter or digit.", errors.INVALID)
    return name


def pool_xml(spec: PoolSpec) -> str:
    check_pool_spec(spec)
    target = spec.target_path.strip() or {"logical": f"/dev/{spec.source_name.strip()}",
                                          "iscsi": "/dev/disk/by-path", "disk": "/dev"}.get(spec.type, "")
    doc = Pool.new(type=spec.type, name=spec.name.strip())
    doc.element("./source")  # libvirt writes one for every type, empty for a directory
    return doc.set(**_pool_source(spec), target_path=target).to_string()


def check_pool_spec(spec: PoolSpec) -> None:
    """Everything about a new pool that can be checked without asking the host."""
    check_name(spec.name, "pool")
    if spec.type not in POOL_TYPES:
        raise VirtError(f"'{spec.type}' is not a pool type webvirt makes. Use one of: {', '.join(POOL_TYPES)}.",
                        errors.INVALID)
    need = {"dir": ["target_path"], "netfs": ["source_host", "source_path", "target_path"],
            "logical": ["source_name"], "iscsi": ["source_host", "source_path"], "disk": ["source_path"]}[spec.type]
    labels = {"target_path": "a target path", "source_host": "a source host", "source_path": "a source path",
              "source_name": "a volume group name"}
    for attr in need:
        if not getattr(spec, attr).strip():
            raise VirtError(f"A {POOL_LABELS[spec.type]} pool needs {labels[attr]}.", errors.INVALID)
    if spec.target_path and not spec.target_path.startswith("/"):
        raise VirtError(f"The target path '{spec.target_path}' must be absolute (start with /).", errors.INVALID)


def _pool_source(spec: PoolSpec) -> dict[str, str | None]:
    """The Pool properties of a new pool's <source>, in the order libvirt writes them."""
    host, path, name = spec.source_host.strip(), spec.source_path.strip(), spec.source_name.strip()
    sources: dict[str, dict[str, str | None]] = {
        "dir": {},
        "netfs": {"source_host": host, "source_dir": path, "source_format": "nfs"},
        "logical": {"source_device": path or None, "source_format": "lvm2", "source_name": name},
        "iscsi": {"source_host": host, "source_device": path},
        "disk": {"source_device": path, "source_format": "dos"},
    }
    return sources[spec.type]


def volume_xml(name: str, fmt: str, capacity_mib: int) -> str:
    check_name(name, "volume")
    if fmt not in VOLUME_FORMATS:
        raise VirtError(f"'{fmt}' is not a volume format webvirt makes. Use qcow2 or raw.", errors.INVALID)
    if capacity_mib <= 0:
        raise VirtError("A volume needs a size of at least 1 MiB.", errors.INVALID)
    return new_volume(name.strip(), fmt, capacity_mib * MIB).to_string()


def new_volume(name: str, fmt: str, capacity: int) -> Volume:
    """An empty volume of `capacity` bytes that takes space as it fills; a qcow2 one in qcow2 version 3
    (compat 1.1), which every QEMU webvirt runs on reads."""
    return Volume.new(name=name, capacity=capacity, allocation=0, format=fmt, compat="1.1" if fmt == "qcow2" else None)
