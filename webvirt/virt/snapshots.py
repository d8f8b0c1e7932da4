"""Domain snapshots: list, take, revert, delete, and reset a linked clone to its template. No Django here.

Two kinds, never mixed on one domain (libvirt's delete and revert break when they are):
- internal: inside the qcow2 disks (with the memory when the domain runs); libvirt reverts and deletes
  them itself;
- external, disk-only: each disk gets a new overlay file. libvirt 9.0 cannot revert to these (that came
  in 9.9), so webvirt does: stop the domain, start a new overlay on the snapshot's image, redefine. Delete
  removes the snapshot's metadata and then every file nothing needs any more (webvirt.virt.chains);
  it merges no layers, so nothing is ever written into a file a snapshot or a template's clone reads.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import libvirt

from webvirt.virt import chains, errors
from webvirt.virt.clone import NAME_RE
from webvirt.virt.domains import STATE_LABELS, lookup, state_name
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshotxml import DomainSnapshot as SnapshotXML
from webvirt.virt.storage import check_space

INTERNAL, EXTERNAL = "internal", "external"
KINDS = ("auto", INTERNAL, EXTERNAL)
REDEFINE_CURRENT = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT


@dataclass
class SnapshotInfo:
    name: str
    parent: str | None
    description: str
    created: int  # seconds since the epoch
    state: str  # the domain's state when it was taken: running, paused, shutoff, disk-snapshot
    kind: str
    memory: bool
    current: bool
    size_bytes: int | None  # external: its overlays' allocation; internal: unknown to libvirt
    depth: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, tz=UTC)

    @property
    def state_label(self) -> str:
        return "disks only" if self.state == "disk-snapshot" else STATE_LABELS.get(self.state, self.state)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise VirtError(f"'{errors.quote(name)}' is not a usable snapshot name: use up to 63 letters, digits, "
                        "'.', '_' and '-', starting with a letter or digit.", errors.INVALID)
    return name


def lookup_snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise VirtError(f"{dom.name()} has no snapshot named '{errors.quote(name)}'.", errors.NOT_FOUND) from None
        raise


# Reading ----------------------------------------------------------------------------------------

def _info(conn: libvirt.virConnect, snap: libvirt.virDomainSnapshot, current: str | None) -> SnapshotInfo:
    doc = SnapshotXML.from_string(snap.getXMLDesc(0))
    files = list(doc.external_files.values())
    size = None
    vols = [chains.volume_at(conn, path) for path in files]
    if vols and None not in vols:  # an overlay in no pool: its size is unknown, not 0 B
        size = sum(int(vol.info()[2]) for vol in vols if vol is not None)
    return SnapshotInfo(name=doc.name or "", parent=doc.parent, description=doc.description or "",
                        created=doc.created or 0, state=doc.state or "", kind=doc.kind, memory=doc.memory,
                        current=doc.name == current, size_bytes=size, files=files)


def current_name(dom: libvirt.virDomain) -> str | None:
    return str(dom.snapshotCurrent(0).getName()) if dom.hasCurrentSnapshot(0) else None


def list_tree(conn: libvirt.virConnect, uuid: str) -> list[SnapshotInfo]:
    """Every snapshot of the domain, parents before their children, siblings oldest first."""
    dom = lookup(conn, uuid)
    current = current_name(dom)
    infos = errors.read_present(dom.listAllSnapshots(0), lambda s: _info(conn, s, current),
                                libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT)
    return tree_order(infos)


def tree_order(infos: list[SnapshotInfo]) -> list[SnapshotInfo]:
    """Depth-first order with each snapshot's depth set; a snapshot whose parent is gone counts as a root."""
    names = {i.name for i in infos}
    children: dict[str | None, list[SnapshotInfo]] = {}
    for info in sorted(infos, key=lambda i: (i.created, i.name)):
        children.setdefault(info.parent if info.parent in names else None, []).append(info)
    ordered: list[SnapshotInfo] = []
    stack = [(info, 0) for info in reversed(children.get(None, []))]
    while stack:
        info, depth = stack.pop()
        info.depth = depth
        ordered.append(info)
        stack.extend((child, depth + 1) for child in reversed(children.get(info.name, [])))
    return ordered


def descendants(infos: list[SnapshotInfo], name: str) -> list[str]:
    """The names of `name`'s children, their children and so on (tree order)."""
    found = [name]
    for info in tree_order(infos):
        if info.parent in found:
            found.append(info.name)
    return found[1:]


# Taking -----------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a new snapshot will be, and why: decided before the job starts, shown to the user."""

    kind: str
    reason: str
    memory: bool
    extra_bytes: int  # what it can add on disk: overlays up to their disks' size, the memory state
    disks: dict[str, str]  # target -> the file it writes to now


def plan(conn: libvirt.virConnect, uuid: str, requested: str, memory: bool) -> Plan:
    """Choose the kind of a new snapshot, or refuse with a sentence that says what would work."""
    if requested not in KINDS:
        raise VirtError(f"'{errors.quote(requested)}' is not a snapshot kind; use auto, internal or external.",
                        errors.INVALID)
    dom = lookup(conn, uuid)
    doc = DomainXML.from_string(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    running = state_name(dom.state()[0]) in ("running", "paused", "blocked")
    if memory and not running:
        raise VirtError(f"{dom.name()} is {STATE_LABELS[state_name(dom.state()[0])]}: there is no memory to "
                        "include. Take the snapshot without memory, or start the domain first.", errors.INVALID)
    kind, reason = _choose(dom, doc, requested, memory, running)
    disks = {d.target_dev or "": d.source_file or d.source_dev or "" for d in doc.writable_disks}
    if not disks:
        raise VirtError(f"{dom.name()} has no writable disk to snapshot.", errors.INVALID)
    capacities = [dom.blockInfo(target, 0)[0] for target in disks]
    extra = (sum(capacities) if kind == EXTERNAL else 0) + (dom.maxMemory() * 1024 if memory else 0)
    return Plan(kind=kind, reason=reason, memory=memory, extra_bytes=extra, disks=disks)


def _choose(dom: libvirt.virDomain, doc: DomainXML, requested: str, memory: bool, running: bool) -> tuple[str, str]:
    existing = [SnapshotXML.from_string(s.getXMLDesc(0)).kind for s in dom.listAllSnapshots(0)]
    raw = [d.target_dev for d in doc.writable_disks if d.driver_type != "qcow2"]
    if existing:
        kind, reason = existing[0], f"{dom.name()} already has {existing[0]} snapshots, and a domain keeps one kind"
        if requested not in ("auto", kind):
            raise VirtError(f"{reason}: mixing the two breaks libvirt's revert and delete. Take an {kind} snapshot, "
                            "or delete the others first.", errors.INVALID)
    elif requested == EXTERNAL:
        kind, reason = EXTERNAL, "you asked for an external snapshot"
    elif doc.uefi or raw or (running and not memory):
        kind = EXTERNAL
        reason = ("it boots with UEFI, whose variables an internal snapshot does not save" if doc.uefi else
                  f"disk {raw[0]} is not qcow2, and only qcow2 holds internal snapshots" if raw else
                  "a running domain's internal snapshot always includes its memory, and you left memory out")
        if requested == INTERNAL:
            raise VirtError(f"{dom.name()} cannot have internal snapshots: {reason}.", errors.INVALID)
    else:
        kind, reason = INTERNAL, "every disk is qcow2 and the firmware is BIOS"
    if kind == EXTERNAL and memory:
        raise VirtError(f"External snapshots are disk-only ({reason}): leave memory out.", errors.INVALID)
    if kind == INTERNAL and running and not memory:
        raise VirtError(f"{dom.name()} has internal snapshots, and a running domain's internal snapshot always "
                        "includes its memory: include memory, or shut the domain down first.", errors.INVALID)
    return kind, reason


def check_room(conn: libvirt.virConnect, chosen: Plan) -> None:
    """The pool of the first disk must hold the memory state (internal) or the new overlays' metadata."""
    vol = chains.volume_at(conn, next(iter(chosen.disks.values())))
    if vol is not None:
        need = (chosen.extra_bytes if chosen.memory else 0) + len(chosen.disks) * 1024**2
        check_space(vol.storagePoolLookupByVolume(), need, "The snapshot")


def create(conn: libvirt.virConnect, uuid: str, name: str, description: str, chosen: Plan) -> SnapshotInfo:
    """Take the snapshot; libvirt undoes a failed one itself (ATOMIC)."""
    check_name(name)
    refuse_taken_name(conn, uuid, name)
    dom = lookup(conn, uuid)
    doc = SnapshotXML.new(name=name, description=description or None)
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    if chosen.kind == EXTERNAL:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        for target, path in chosen.disks.items():
            overlay = os.path.join(os.path.dirname(path), f"{dom.name()}-{target}.{name}.qcow2")
            doc.add_disk(name=target, snapshot=EXTERNAL, type="file").set(driver_type="qcow2", source_file=overlay)
    else:
        doc.memory_snapshot = INTERNAL if chosen.memory else "no"
    snap = dom.snapshotCreateXML(doc.to_string(), flags)
    if chosen.kind == EXTERNAL:
        for path in SnapshotXML.from_string(snap.getXMLDesc(0)).external_files.values():
            chains.volume_at(conn, path)  # so the storage pages list the new overlay at once
    return _info(conn, snap, current_name(dom))


def refuse_taken_name(conn: libvirt.virConnect, uuid: str, name: str) -> None:
    dom = lookup(conn, uuid)
    errors.refuse_taken(lambda: dom.snapshotLookupByName(name, 0),
                        f"{dom.name()} already has a snapshot named '{name}'. Choose another name.")


def footprint(conn: libvirt.virConnect, uuid: str, keep: frozenset[str]) -> int:
    """What the domain can take on disk, for quotas: each of its files (overlays included) at its disks'
    full size, and a memory state per snapshot that holds one. Template bases (`keep`) are not its own."""
    dom = lookup(conn, uuid)
    vols = [chains.volume_at(conn, path) for path in chains.owned(conn, dom) - keep]
    memory = sum(1 for doc in chains.snapshot_docs(dom) if doc.memory) * int(dom.maxMemory()) * 1024
    return sum(int(vol.info()[1]) for vol in vols if vol is not None) + memory


def disk_allocation(conn: libvirt.virConnect, uuid: str) -> int:
    """Bytes the domain's disk files take now: an internal snapshot's size is how much this grows."""
    dom = lookup(conn, uuid)
    return sum(dom.blockInfo(target, 0)[1] for target in chains.active_files(dom))


# Reverting, deleting, resetting -----------------------------------------------------------------

def revert(conn: libvirt.virConnect, uuid: str, name: str, keep: frozenset[str]) -> list[str]:
    """Go back to snapshot `name`; returns the files deleted (an abandoned branch nothing else needs)."""
    dom = lookup(conn, uuid)
    snap = lookup_snapshot(dom, name)
    doc = SnapshotXML.from_string(snap.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE))
    if doc.kind == INTERNAL:
        dom.revertToSnapshot(snap, 0)
        return []
    before = chains.owned(conn, dom)
    if dom.isActive():
        dom.destroy()
    made: list[libvirt.virStorageVol] = []
    try:
        xml = DomainXML.from_string(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        for target, overlay in doc.external_files.items():
            image = chains.backing_of(conn, overlay)
            if image is None:
                raise VirtError(f"The image of snapshot {name} for disk {target} cannot be found; it was changed "
                                "outside webvirt.", errors.STATE)
            made.append(chains.new_overlay(conn, image, f"{dom.name()}-{target}.{name}.{time.time_ns() // 1000}.qcow2"))
            _point_disk(xml, target, made[-1].path())
        conn.defineXML(xml.to_string())
    except Exception:
        for vol in made:
            vol.delete(0)
        raise
    dom.snapshotCreateXML(doc.to_string(), REDEFINE_CURRENT)
    return chains.collect(conn, dom, before, keep)


def _point_disk(xml: DomainXML, target: str, path: str) -> None:
    disk = next(d for d in xml.writable_disks if d.target_dev == target)
    disk.remove("./backingStore")
    disk.remove("./source")
    disk.set(type="file", driver_type="qcow2", source_file=path)


def delete(conn: libvirt.virConnect, uuid: str, name: str, children: bool, keep: frozenset[str]) -> list[str]:
    """Delete snapshot `name` (and with `children` everything below it); returns the files deleted."""
    dom = lookup(conn, uuid)
    snap = lookup_snapshot(dom, name)
    if SnapshotXML.from_string(snap.getXMLDesc(0)).kind == INTERNAL:
        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if children else 0)
        return []
    before = chains.owned(conn, dom)
    below = descendants(list_tree(conn, uuid), name) if children else []
    for each in [*reversed(below), name]:  # leaves first: libvirt re-parents the children of what goes
        lookup_snapshot(dom, each).delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    return chains.collect(conn, dom, before, keep)


def reset_to_template(conn: libvirt.virConnect, uuid: str, bases: dict[str, str], keep: frozenset[str]) -> list[str]:
    """Discard everything written since a linked clone was made: its snapshots, and its overlays, each
    replaced by a fresh one on the template's base (`bases`: disk target -> base path)."""
    dom = lookup(conn, uuid)
    before = chains.owned(conn, dom)
    layers = {target: chains.chain(conn, path) for target, path in chains.active_files(dom).items()}
    own = {target: _layer_on(files, bases.get(target), dom.name(), target) for target, files in layers.items()
           if target in bases}
    if dom.isActive():
        dom.destroy()
    _delete_all(dom, disks_replaced=own.keys() == layers.keys())
    xml = DomainXML.from_string(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for target, path in own.items():
        vol = chains.volume_at(conn, path)
        if vol is None:
            raise VirtError(f"{path} is not a volume in any storage pool; it cannot be replaced.", errors.STATE)
        pool = vol.storagePoolLookupByVolume()
        vol.delete(0)
        chains.new_overlay(conn, bases[target], os.path.basename(path), pool)
        _point_disk(xml, target, path)
    conn.defineXML(xml.to_string())
    return chains.collect(conn, dom, before - set(own.values()), keep)


def _delete_all(dom: libvirt.virDomain, disks_replaced: bool) -> None:
    """Delete every snapshot, leaves first. An internal one lives inside the disks: when every disk is
    about to be replaced its metadata is enough (quicker: QEMU need not rewrite the files); otherwise it
    is deleted for real, so nothing of it stays in a disk that is kept. External ones go by their
    metadata (their files are collected afterwards)."""
    for snap in reversed(dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)):
        if SnapshotXML.from_string(snap.getXMLDesc(0)).kind == INTERNAL and not disks_replaced:
            snap.delete(0)
            continue
        try:
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        except libvirt.libvirtError:
            snap.delete(0)  # a driver that keeps no metadata apart (the test driver)


def _layer_on(files: list[str], base: str | None, name: str, target: str) -> str:
    """The clone's own overlay: the file in the disk's chain right above the template's base."""
    if base in files and files.index(base) > 0:
        return files[files.index(base) - 1]
    raise VirtError(f"Disk {target} of {name} is not layered on its template's base any more, so it cannot be "
                    "reset to the template.", errors.STATE)
