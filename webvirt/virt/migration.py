"""Moving a domain to another host: the pre-flight check, the destination's disks, the migration itself,
its progress and its cancellation. No Django here.

Storage modes:
- shared: both hosts see the disks at the same paths; only memory (and the definition) moves;
- copy-all: every disk is copied whole (a linked clone arrives flattened) into the pool of the same
  name on the destination;
- copy-inc: only a linked clone's own overlay is copied; the destination must already hold the base
  disk, in the pool of the same name.
Disks land in the destination's pool of the same name as their source pool, at that pool's path, so
the two hosts need not use the same folders. webvirt makes the destination's volumes itself before
the copy, so a failed or cancelled migration can remove exactly what it made.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import libvirt
from lxml import etree

from webvirt.virt import chains, errors, hostinfo
from webvirt.virt.domains import STATE_LABELS, lookup, state_name
from webvirt.virt.domainxml import Disk
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshotxml import DomainSnapshot as SnapshotXML
from webvirt.virt.storagexml import Pool, Volume, new_volume

SHARED, COPY_ALL, COPY_INC = "shared", "copy-all", "copy-inc"
STORAGE_MODES = (SHARED, COPY_ALL, COPY_INC)
MIB = 1024 * 1024


@dataclass
class DiskMove:
    """One disk of the domain and where it goes on the destination."""

    target: str
    source: str  # its path on the source
    pool: str  # the name of its source pool (and of the destination pool)
    capacity: int
    allocation: int
    backing: str = ""  # copy-inc: the base's path on the destination
    dest: str = ""  # its path on the destination


@dataclass
class Plan:
    """What a migration will do, or the problems that keep it from starting (each a sentence)."""

    storage: str
    live: bool
    disks: list[DiskMove] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    snapshots: int = 0


def host_uuid(conn: libvirt.virConnect) -> str:
    return etree.fromstring(conn.getCapabilities().encode()).findtext("./host/uuid") or ""


def check(src: libvirt.virConnect, dst: libvirt.virConnect, uuid: str, storage: str, live: bool) -> Plan:
    """Everything that can be known before anything moves; an empty `problems` means it can start."""
    if storage not in STORAGE_MODES:
        raise VirtError(f"'{errors.quote(storage)}' is not a storage mode; use shared, copy-all or copy-inc.",
                        errors.INVALID)
    dom = lookup(src, uuid)
    doc = DomainXML.from_string(dom.XMLDesc(0))
    plan = Plan(storage=storage, live=live, snapshots=dom.snapshotNum(0))
    found = [_same_host(src, dst), _state(dom, live), _offline_copy(dom, storage, live), _hypervisor(dst, doc),
             _cpu(dst, doc), _memory(dst, dom, live), _snapshots(dom, storage, plan.snapshots)]
    plan.problems = [p for p in found if p]
    plan.disks, disk_problems = _disks(src, dst, dom, storage)
    plan.problems += disk_problems + _media(dst, dom)
    return plan


def _same_host(src: libvirt.virConnect, dst: libvirt.virConnect) -> str:
    if host_uuid(src) == host_uuid(dst):
        return ("Both hosts have the same host UUID, so libvirt takes them for one machine. Give each its own "
                "host_uuid in libvirtd.conf.")
    return ""


def _state(dom: libvirt.virDomain, live: bool) -> str:
    state = state_name(dom.state()[0])
    running = state in ("running", "paused", "blocked")
    if live and not running:
        return f"{dom.name()} is {STATE_LABELS[state]}: migrate it offline, or start it first."
    if not live and running:
        return f"{dom.name()} is {STATE_LABELS[state]}: migrate it live, or shut it down first."
    if not live and not dom.isPersistent():
        return f"{dom.name()} is transient: only a defined domain can move offline."
    return ""


def _offline_copy(dom: libvirt.virDomain, storage: str, live: bool) -> str:
    # libvirt copies disks only in a live migration (QEMU copies them): an offline one moves the definition
    # alone, which would then use the empty volumes made on the destination. (A running domain asked to
    # move offline already hears "migrate it live" from _state.)
    if not live and storage != SHARED and state_name(dom.state()[0]) not in ("running", "paused", "blocked"):
        return (f"An offline migration moves {dom.name()}'s definition, not its disks: copying them needs a live "
                "migration. Start it and migrate it live, or use shared storage.")
    return ""


def _hypervisor(dst: libvirt.virConnect, doc: DomainXML) -> str:
    try:
        dst.getDomainCapabilities(doc.emulator, doc.arch, doc.machine, doc.type, 0)
    except libvirt.libvirtError as exc:
        return (f"The destination cannot run this domain's {doc.type} {doc.arch} machine {doc.machine} with "
                f"{doc.emulator}: {errors.from_libvirt(exc).message}")
    return ""


def _cpu(dst: libvirt.virConnect, doc: DomainXML) -> str:
    cpu = doc.node.find("./cpu")
    if cpu is None or cpu.get("mode") == "host-passthrough" or cpu.find("./model") is None:
        return ""
    try:
        result = dst.compareHypervisorCPU(doc.emulator, doc.arch, doc.machine, doc.type,
                                          etree.tostring(cpu, encoding="unicode"), 0)
    except libvirt.libvirtError as exc:
        return f"The destination cannot check this domain's CPU: {errors.from_libvirt(exc).message}"
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return f"The destination's CPU cannot offer this domain's CPU model ({cpu.findtext('./model')})."
    return ""


def _memory(dst: libvirt.virConnect, dom: libvirt.virDomain, live: bool) -> str:
    need = int(dom.info()[2]) * 1024
    free = hostinfo.free_memory(dst)
    if live and need > free:
        return f"The destination has {free // MIB:,} MiB of memory free; {dom.name()} uses {need // MIB:,} MiB."
    return ""


def _snapshots(dom: libvirt.virDomain, storage: str, count: int) -> str:
    if count and storage != SHARED:
        return (f"{dom.name()} has {count} snapshot(s). They cannot travel when the disks are copied: delete them "
                "first, or migrate with shared storage (then they are carried over).")
    return ""


def _disks(src: libvirt.virConnect, dst: libvirt.virConnect, dom: libvirt.virDomain,
           storage: str) -> tuple[list[DiskMove], list[str]]:
    moves, problems = [], []
    for disk, vol in _writable_disks(src, dom):
        target, where = disk.target_dev or "", disk.source
        if vol is None:
            problems.append(f"Disk {target} ({where}) is not a volume in any storage pool, so webvirt cannot tell "
                            "whether the destination has it.")
            continue
        info = vol.info()
        move = DiskMove(target=target, source=str(vol.path()), pool=vol.storagePoolLookupByVolume().name(),
                        capacity=int(info[1]), allocation=int(info[2]))
        if storage != SHARED:
            problem = _copied_disk(src, dst, move, storage, Volume.from_string(vol.XMLDesc(0)))
        elif disk.source_pool:
            problem = _shared_volume(dst, move, disk)
        else:
            problem = _shared_disk(dst, move)
        moves.append(move)
        if problem:
            problems.append(problem)
    return moves, problems


def _writable_disks(src: libvirt.virConnect,
                    dom: libvirt.virDomain) -> list[tuple[Disk, libvirt.virStorageVol | None]]:
    """The disks the domain writes to (its persistent definition), each with its volume on the source:
    a file's (`<source file>`) or a pool's volume (`<disk type='volume'>`). Others (block devices,
    network disks) are not checked here."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
    found: list[tuple[Disk, libvirt.virStorageVol | None]] = []
    for disk in DomainXML.from_string(dom.XMLDesc(flags)).writable_disks:
        if disk.source_pool:
            found.append((disk, _volume(src, disk.source_pool, disk.source_volume or "")))
        elif disk.source_file:
            found.append((disk, chains.volume_at(src, disk.source_file)))
    return found


def _volume(conn: libvirt.virConnect, pool_name: str, name: str) -> libvirt.virStorageVol | None:
    pool = _pool(conn, pool_name)
    if pool is None:
        return None
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def _shared_disk(dst: libvirt.virConnect, move: DiskMove) -> str:
    move.dest = move.source
    if chains.volume_at(dst, move.source) is None:
        return (f"The destination does not see disk {move.target} at {move.source}. Shared storage needs the "
                "same path in a storage pool on both hosts; otherwise copy the disks.")
    return ""


def _shared_volume(dst: libvirt.virConnect, move: DiskMove, disk: Disk) -> str:
    """A `<disk type='volume'>` on shared storage: the destination resolves the same pool and volume
    names, which must lead to the same file, or the domain would arrive on another disk."""
    move.dest = move.source
    pool, name = disk.source_pool or "", disk.source_volume or ""
    if _pool(dst, pool) is None:
        return (f"The destination has no running storage pool named {pool} for disk {move.target} "
                f"({pool}/{name}). Shared storage needs the same pool and volume on both hosts; otherwise copy "
                "the disks.")
    there = _volume(dst, pool, name)
    if there is None:
        return (f"Pool {pool} on the destination has no volume {name} (disk {move.target}). Shared storage needs "
                "the same pool and volume on both hosts; otherwise copy the disks.")
    if there.path() != move.source:
        return (f"Volume {name} of pool {pool} is {there.path()} on the destination but {move.source} here: "
                f"another file, not shared storage, so disk {move.target} would not be the same disk there. Copy "
                "the disks instead.")
    return ""


def _media(dst: libvirt.virConnect, dom: libvirt.virDomain) -> list[str]:
    """Every CD-ROM's medium must be on the destination too, at the same path (or the same pool and
    volume): libvirt opens it there by that name, whatever the storage mode. The running domain's
    medium and its definition's are both checked, since both move."""
    docs = [DomainXML.from_string(dom.XMLDesc(0))]
    if dom.isPersistent() and dom.isActive():
        docs.append(DomainXML.from_string(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
    problems: list[str] = []
    for disk in (d for doc in docs for d in doc.disks if d.device == "cdrom" and d.source):
        if disk.source_pool:
            missing = _volume(dst, disk.source_pool, disk.source_volume or "") is None
            where = f"no volume {disk.source_volume} in a pool {disk.source_pool}"
        else:
            missing = chains.volume_at(dst, disk.source) is None
            where = "no such file in a storage pool"
        problem = (f"CD-ROM {disk.target_dev} holds the ISO {disk.source}, but the destination has {where}. Put "
                   "the ISO there at the same path, or eject it first.")
        if missing and problem not in problems:
            problems.append(problem)
    return problems


def _copied_disk(src: libvirt.virConnect, dst: libvirt.virConnect, move: DiskMove, storage: str,
                 vol: Volume) -> str:
    pool = _pool(dst, move.pool)
    if pool is None:
        return f"The destination has no running storage pool named {move.pool} for disk {move.target}."
    folder = Pool.from_string(pool.XMLDesc(0)).target_path or ""
    move.dest = os.path.join(folder, os.path.basename(move.source))
    if errors.found(lambda: pool.storageVolLookupByName(os.path.basename(move.source))):
        return f"Pool {move.pool} on the destination already has a volume {os.path.basename(move.source)}."
    if storage == COPY_INC:
        base = vol.backing_path
        if not base:
            return f"Disk {move.target} is not a linked clone's overlay: copy all of it instead."
        problem = _base_there(src, dst, base, move)
        if problem:
            return problem
    need = move.capacity if storage == COPY_ALL else move.allocation
    available = int(pool.info()[3])
    if need > available:
        return (f"Pool {move.pool} on the destination has {available // MIB:,} MiB free; disk {move.target} needs "
                f"{need // MIB:,} MiB.")
    return ""


def _base_there(src: libvirt.virConnect, dst: libvirt.virConnect, base: str, move: DiskMove) -> str:
    base_vol = chains.volume_at(src, base)
    base_pool = base_vol.storagePoolLookupByVolume().name() if base_vol is not None else ""
    there = _pool(dst, base_pool) if base_pool else None
    name = os.path.basename(base)
    if there is not None and errors.found(lambda: there.storageVolLookupByName(name)):
        move.backing = str(there.storageVolLookupByName(name).path())
        return ""
    return (f"The base disk of {move.target} ({name} in pool {base_pool or '?'}) is not on the destination: copy "
            "changes needs it there. Copy all of the disk instead.")


def _pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None
    if not pool.isActive():
        return None
    pool.refresh(0)
    return pool


# Moving -----------------------------------------------------------------------------------------

def make_volume(dst: libvirt.virConnect, move: DiskMove, storage: str) -> str:
    """The destination's empty volume for one copied disk (qcow2; an overlay on the base for copy-inc)."""
    pool = _pool(dst, move.pool)
    if pool is None:
        raise VirtError(f"The destination's pool {move.pool} is gone.", errors.STATE)
    doc = new_volume(os.path.basename(move.dest), "qcow2", move.capacity)
    if storage == COPY_INC:
        doc.set(backing_path=move.backing, backing_format="qcow2")
    return str(pool.createXML(doc.to_string(), 0).path())


def delete_sources(src: libvirt.virConnect, plan: Plan, keep: frozenset[str]) -> list[str]:
    """After the disks were copied, their source files are nobody's: delete them (never one in `keep`, a
    template's base), so nothing is left behind and the domain can move back."""
    deleted = []
    for disk in plan.disks if plan.storage != SHARED else []:
        vol = chains.volume_at(src, disk.source)
        if vol is not None and disk.source not in keep:
            vol.delete(0)
            deleted.append(disk.source)
    return deleted


def flags_and_params(plan: Plan, uri: str, bandwidth_mib_s: int | None, xml: str) -> tuple[int, dict[str, Any]]:
    """How to ask libvirt for this migration. The domain moves whole: defined on the destination,
    undefined on the source."""
    flags = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    flags |= libvirt.VIR_MIGRATE_LIVE if plan.live else libvirt.VIR_MIGRATE_OFFLINE
    params: dict[str, Any] = {}
    if uri and plan.live:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = uri
        address = urlsplit(uri).hostname or ""
        if _is_ip(address):  # the destination listens there only (memory and the disks' NBD server)
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = address
    if bandwidth_mib_s:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth_mib_s)
    if plan.storage == SHARED:
        # libvirt cannot tell a shared mount from a local folder; the check made sure the destination
        # sees every disk at the same path.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    else:
        if plan.live:
            flags |= (libvirt.VIR_MIGRATE_NON_SHARED_DISK if plan.storage == COPY_ALL
                      else libvirt.VIR_MIGRATE_NON_SHARED_INC)
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [d.target for d in plan.disks]
        # Both: the running domain and its persistent definition use the destination's paths.
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = dest_xml(xml, plan)
    return flags, params


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def dest_xml(xml: str, plan: Plan) -> str:
    """The domain's definition with its disks at their destination paths."""
    doc = DomainXML.from_string(xml)
    where = {d.target: d.dest for d in plan.disks}
    for disk in doc.writable_disks:
        if disk.target_dev in where:
            disk.remove("./backingStore")
            disk.remove("./source")
            disk.set(type="file", driver_type="qcow2", source_file=where[disk.target_dev])
    return doc.to_string()


@dataclass
class Progress:
    fraction: float  # 0..1 of all the data to move
    remaining: int  # bytes
    total: int
    elapsed_ms: int
    memory_remaining: int
    disk_remaining: int
    iteration: int = 0  # memory passes begun: 1 is the first full copy, later ones chase what changed


def progress(dom: libvirt.virDomain, memory_bytes: int = 0) -> Progress | None:
    """The migration job's figures, or None when no job runs (not started yet, or over).

    While disks are copied libvirt counts no memory yet: the domain's memory size (`memory_bytes`)
    stands in for it, so the fraction does not fall back when the memory starts to move.
    """
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    memory_total = int(stats.get("memory_total", 0)) or memory_bytes
    disk_total = int(stats.get("disk_total", 0))
    done = int(stats.get("memory_processed", 0)) + int(stats.get("disk_processed", 0))
    total = memory_total + disk_total or int(stats.get("data_total", 0))
    remaining = int(stats.get("data_remaining", 0))
    return Progress(fraction=min(1.0, done / total) if total else 0.0, remaining=remaining, total=total,
                    elapsed_ms=int(stats.get("time_elapsed", 0)),
                    memory_remaining=int(stats.get("memory_remaining", 0)),
                    disk_remaining=int(stats.get("disk_remaining", 0)),
                    iteration=int(stats.get("memory_iteration", 0)))


class Estimate:
    """A smooth fraction between libvirt's figures, which move in steps (16 MiB for a disk copy): it goes
    on at the rate seen so far, but never past the next step."""

    STEP = 16 * MIB

    def __init__(self) -> None:
        self.seen = (0.0, 0.0)  # (seconds, bytes done) when libvirt last reported a change
        self.rate = 0.0

    def fraction(self, now: float, done: int, total: int) -> float:
        if not total:
            return 0.0
        if done != self.seen[1]:
            if self.seen[0]:
                # Never backwards: libvirt's figure drops when the guest dirties memory already sent.
                self.rate = max(0.0, (done - self.seen[1]) / max(0.001, now - self.seen[0]))
            self.seen = (now, float(done))
        guess = done + min(self.rate * (now - self.seen[0]), self.STEP)
        return min(1.0, guess / total)


class StallPolicy:
    """When the data left stops shrinking, allow more downtime step by step up to a limit, then give up
    (as oVirt and KubeVirt do): a guest that dirties memory faster than it moves never finishes."""

    def __init__(self, downtime_ms: int, limit_ms: int = 2000, window_s: float = 5.0) -> None:
        self.downtime_ms, self.limit_ms, self.window_s = downtime_ms, limit_ms, window_s
        self.best: int | None = None
        self.since = 0.0

    def observe(self, now: float, remaining: int) -> str:
        """"" (carry on), "raise" (use `downtime_ms`, just raised) or "abort"."""
        if self.best is None or remaining < self.best * 0.95:
            self.best, self.since = remaining, now
            return ""
        if now - self.since < self.window_s:
            return ""
        self.since = now
        if self.downtime_ms >= self.limit_ms:
            return "abort"
        self.downtime_ms = min(self.limit_ms, self.downtime_ms * 2)
        return "raise"


def downtime_ms(dom: libvirt.virDomain) -> int | None:
    """The finished migration's real downtime, from the domain on the destination."""
    try:
        # KEEP_COMPLETED: reading them must not erase them for anyone else (virsh domjobinfo --completed).
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
    except libvirt.libvirtError:
        return None
    value = stats.get("downtime")
    return int(value) if value is not None else None


# Snapshots travel with shared storage: their metadata leaves with the domain and is defined again there.

def take_snapshot_metadata(dom: libvirt.virDomain) -> list[tuple[str, bool]]:
    """Each snapshot's XML (parents first) and whether it is current; then their metadata is removed,
    since libvirt migrates no domain that has any."""
    current = dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None
    saved = [(s.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE), s.getName() == current)
             for s in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)]
    for snap in reversed(dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)):
        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    return saved


def put_snapshot_metadata(dom: libvirt.virDomain, saved: list[tuple[str, bool]]) -> None:
    for xml, current in saved:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if current:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        dom.snapshotCreateXML(xml, flags)


def snapshot_names(saved: list[tuple[str, bool]]) -> list[str]:
    return [SnapshotXML.from_string(xml).name or "" for xml, _ in saved]
