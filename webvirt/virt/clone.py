"""Clone planning and the libvirt calls that make clones: linked overlays or full copies.

A template is a domain definition whose disks are read-only base volumes. A clone gets a new
name, UUID, MAC addresses, disk volumes and per-domain paths; its disks are either qcow2
overlays backed by the template's volumes (linked: about 10 ms and 200 KB each) or full copies
made by libvirt (createXMLFrom).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import asdict, dataclass
from typing import Any

import libvirt
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.domains import STATE_LABELS, lookup, state_name
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.seed import drop as drop_seed
from webvirt.virt.storagexml import Volume, new_volume
from webvirt.virt.xmlobj import detach

FILE_POOL_TYPES = {"dir", "fs", "netfs"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
TEMPLATE_NS = "https://webvirt.dev/xmlns/template/1"


@dataclass
class BaseDisk:
    """One of a template's disks, as the clone planner needs it."""

    target: str
    path: str
    pool: str
    format: str
    capacity: int
    allocation: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pool_of(vol: libvirt.virStorageVol) -> libvirt.virStoragePool:
    return vol.storagePoolLookupByVolume()


def base_disks(conn: libvirt.virConnect, xml: str) -> list[BaseDisk]:
    """The template's writable disks, each of which must be a volume libvirt's storage knows."""
    disks = []
    for disk in DomainXML.from_string(xml).disks:
        if disk.device not in (None, "disk"):
            continue
        path = disk.source_file or disk.source_dev
        try:
            if disk.source_pool:
                vol = conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(disk.source_volume)
            else:
                vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            raise VirtError(f"The disk {disk.target_dev} ({disk.source or 'no source'}) is not a volume in any "
                            "storage pool on the host; put it in a pool to make a template of it.",
                            errors.INVALID) from None
        _type, capacity, allocation = vol.info()
        fmt_el = etree.fromstring(vol.XMLDesc(0).encode()).find("./target/format")
        fmt = fmt_el.get("type", "raw") if fmt_el is not None else "raw"
        disks.append(BaseDisk(target=disk.target_dev or "", path=vol.path(), pool=_pool_of(vol).name(),
                              format=fmt, capacity=capacity, allocation=allocation))
    if not disks:
        raise VirtError("The domain has no disk to clone.", errors.INVALID)
    return disks


def make_template(conn: libvirt.virConnect, uuid: str) -> tuple[str, list[BaseDisk]]:
    """Turn a shut-off domain into a template: its disks become read-only, it stops autostarting.

    Returns the definition clones are made from and its base disks. That definition has no cloud-init
    seed: each clone gets its own, and one carried over would give every clone the template's identity
    (the template's own definition keeps it, so that removing the template deletes it).
    """
    dom = lookup(conn, uuid)
    state = state_name(dom.state()[0])
    if state != "shutoff":
        raise VirtError(f"{dom.name()} is {STATE_LABELS[state]}; shut it off before making a template of it.",
                        errors.STATE)
    if not dom.isPersistent():
        raise VirtError(f"{dom.name()} is transient; only a defined domain can become a template.", errors.STATE)
    if dom.snapshotNum(0):
        raise VirtError(f"{dom.name()} has {dom.snapshotNum(0)} snapshot(s). Delete them on its Snapshots tab first: "
                        "a template's disks become the read-only bases of its clones, and no snapshot survives that.",
                        errors.STATE)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    disks = base_disks(conn, xml)
    root = etree.fromstring(xml.encode())
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") == "disk" and disk.find("./readonly") is None:
            etree.SubElement(disk, "readonly")
    meta = root.find("./metadata")
    if meta is None:
        meta = etree.SubElement(root, "metadata")
    if meta.find(f"{{{TEMPLATE_NS}}}template") is None:
        etree.SubElement(meta, f"{{{TEMPLATE_NS}}}template", nsmap={"webvirt": TEMPLATE_NS})
    conn.defineXMLFlags(etree.tostring(root, encoding="unicode"), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    dom.setAutostart(0)
    return drop_seed(xml), disks


# The whole grammar of a name pattern: name characters around one {n}, {n:0N} or {n:0Nd} (N <= 6).
# Never str.format: a pattern is user input, and format's mini-language can reach attributes
# ({n.real}) or build strings of any width ({n:99999999}).
PATTERN_RE = re.compile(r"^([A-Za-z0-9._-]*)\{n(?::0([1-6])d?)?\}([A-Za-z0-9._-]*)$")
MAX_NUMBER = 999_999


@dataclass
class NamePattern:
    prefix: str
    width: int
    suffix: str

    @classmethod
    def parse(cls, pattern: str) -> NamePattern:
        match = PATTERN_RE.match(pattern)
        if match is None:
            raise VirtError(f"The name pattern '{errors.quote(pattern)}' is not valid. Use letters, digits, '.', "
                            "'_' and '-' around one {n}, {n:02} or {n:03d} where the number goes, "
                            "for example exam-{n:02}.",
                            errors.INVALID)
        return cls(prefix=match[1], width=int(match[2] or 0), suffix=match[3])

    def name(self, number: int) -> str:
        return f"{self.prefix}{number:0{self.width}d}{self.suffix}"

    def check(self, last: int) -> None:
        """Refuse before building any name: numbers too large, or names too long."""
        if last > MAX_NUMBER:
            raise VirtError(f"Numbers go up to {MAX_NUMBER:,}; choose a smaller first number.", errors.INVALID)
        longest = len(self.prefix) + max(self.width, len(str(last))) + len(self.suffix)
        if longest > 63:
            raise VirtError(f"The names would be {longest} characters long; at most 63 are allowed.", errors.INVALID)
        if not NAME_RE.match(self.name(last)):
            raise VirtError("A domain name starts with a letter or a digit; change the start of the pattern.",
                            errors.INVALID)


def clone_names(pattern: str, count: int, start: int = 1) -> list[str]:
    """Names from a pattern such as `exam-{n:02}`: distinct and valid, or a VirtError."""
    parsed = NamePattern.parse(pattern)
    if start < 0 or count < 1:
        raise VirtError("The first number and the count must be positive.", errors.INVALID)
    parsed.check(start + count - 1)
    return [parsed.name(i) for i in range(start, start + count)]


def first_free(pattern: str, count: int, taken: set[str], limit: int = MAX_NUMBER) -> int:
    """The first number from which `count` names of `pattern` are all free: a second batch of
    `exam-{n:02}` goes on at exam-13 after exam-01..12 rather than colliding with them."""
    first = 1
    while True:
        names = clone_names(pattern, count, first)
        clashes = [i for i, name in enumerate(names) if name in taken]
        if not clashes:
            return first
        first += clashes[-1] + 1
        if first + count - 1 > min(limit, MAX_NUMBER):
            raise VirtError(f"No {count} free names follow the pattern {errors.quote(pattern)}. "
                            "Choose another pattern.", errors.CONFLICT)


def clone_pool(conn: libvirt.virConnect, name: str, linked: bool) -> tuple[libvirt.virStoragePool, str]:
    """The pool clones' disks go to, and its directory; linked clones need a file-based one."""
    pool = conn.storagePoolLookupByName(name)
    root = etree.fromstring(pool.XMLDesc(0).encode())
    if linked and root.get("type") not in FILE_POOL_TYPES:
        raise VirtError(f"Linked clones need a file-based pool (dir, fs or netfs); pool {name} is "
                        f"'{root.get('type')}'. Make full clones, or set a file-based pool for clones on the "
                        "template.", errors.INVALID)
    return pool, root.findtext("./target/path") or ""


def make_disk(conn: libvirt.virConnect, pool: libvirt.virStoragePool, name: str, disk: BaseDisk,
              linked: bool) -> str:
    """One clone disk: an overlay on the base, or a full copy of it (slow: libvirt copies every byte).
    Returns its path."""
    if linked:
        return str(pool.createXML(overlay_xml(name, disk), 0).path())
    base = conn.storageVolLookupByPath(disk.path)
    return str(pool.createXMLFrom(copy_xml(name, disk), base, 0).path())


def copied_bytes(conn: libvirt.virConnect, paths: list[str]) -> int:
    """How much of the full copies at `paths` libvirt has written so far (the progress of a copy)."""
    written = 0
    for path in paths:
        try:
            written += conn.storageVolLookupByPath(path).info()[2]
        except libvirt.libvirtError:
            continue  # not visible yet
    return written


def taken_volumes(conn: libvirt.virConnect, disks: list[BaseDisk], clone_pool: str, names: list[str]) -> list[str]:
    """The volumes that clones `names` would make which already exist: a job must never be
    started over them (its undo could otherwise be taken to own them)."""
    existing: dict[str, set[str]] = {}  # pool -> its volumes, each pool read once
    for pool_name in {clone_pool or disk.pool for disk in disks}:
        pool = conn.storagePoolLookupByName(pool_name)
        try:
            pool.refresh(0)  # a file made behind libvirt's back counts too
        except libvirt.libvirtError:
            pass  # refused while another job writes into the pool: its volumes are listed anyway
        existing[pool_name] = set(pool.listVolumes())
    return [f"{clone_pool or disk.pool}/{volume_name(n, disk)}" for disk in disks for n in names
            if volume_name(n, disk) in existing[clone_pool or disk.pool]]


def volume_name(clone: str, disk: BaseDisk) -> str:
    return f"{clone}-{disk.target or 'disk'}.qcow2"


def overlay_xml(name: str, disk: BaseDisk) -> str:
    """A qcow2 volume backed by the base disk: a linked clone's disk."""
    overlay = new_volume(name, "qcow2", disk.capacity)
    return overlay.set(permissions_mode="0600", backing_path=disk.path, backing_format=disk.format).to_string()


def copy_xml(name: str, disk: BaseDisk) -> str:
    """A full copy's volume, in qcow2 (compat 1.1) whatever the base's format."""
    return Volume.new(name=name, capacity=disk.capacity, format="qcow2", compat="1.1").to_string()


def clone_domain_xml(template_xml: str, name: str, uuid: str, disk_paths: dict[str, str],
                     description: str = "") -> str:
    """The clone's definition: new name, UUID and disks; no MACs, ports or per-domain paths copied. A
    seed in the template's definition (one made before make_template dropped it) is never shared."""
    root = etree.fromstring(drop_seed(template_xml).encode())
    _child(root, "./name").text = name
    uuid_el = root.find("./uuid")
    if uuid_el is None:
        uuid_el = etree.SubElement(root, "uuid")
    uuid_el.text = uuid
    for tag in ("./title", "./metadata", "./description"):
        for node in root.findall(tag):
            root.remove(node)
    if description:
        etree.SubElement(root, "description").text = description
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = _child(disk, "./target").get("dev") or ""
        for node in disk.findall("./readonly") + disk.findall("./backingStore"):
            disk.remove(node)
        source = disk.find("./source")
        if source is None:
            source = etree.SubElement(disk, "source")
        source.attrib.clear()
        source.set("file", disk_paths[target])
        disk.set("type", "file")
        driver = disk.find("./driver")
        if driver is not None:
            driver.set("type", "qcow2")
    for node in root.findall("./devices/interface/mac") + root.findall("./devices/interface/target"):
        detach(node)  # libvirt gives each clone new MAC addresses and tap devices.
    for graphics in root.findall("./devices/graphics"):
        for attr in ("port", "websocket", "tlsPort"):
            graphics.attrib.pop(attr, None)
        graphics.set("autoport", "yes")
    _rename_paths(root, name)
    return etree.tostring(root, encoding="unicode")


def _child(node: etree._Element, path: str) -> etree._Element:
    found = node.find(path)
    if found is None:
        raise VirtError(f"The template's definition has no {path.lstrip('./')} element.", errors.INVALID)
    return found


def _rename_paths(root: etree._Element, name: str) -> None:
    """Per-domain paths that are not disks (logs, sockets, NVRAM) must not be shared with the template."""
    for log in root.iter("log"):
        path = log.get("file")
        if path:
            log.set("file", re.sub(r"[^/]+$", f"{name}-{re.sub(r'[^/]*/', '', path)}", path))
    for chardev in root.findall("./devices/*"):
        source = chardev.find("./source")
        if chardev.tag in ("serial", "console", "channel", "parallel") and source is not None:
            if chardev.get("type") in ("pty", "unix") and source.get("path"):
                source.attrib.pop("path")
    nvram = root.find("./os/nvram")
    if nvram is not None:
        nvram.text = None  # libvirt makes a fresh NVRAM file from the template for each domain.


def new_uuid() -> str:
    return str(uuidlib.uuid4())
