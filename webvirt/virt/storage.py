"""Storage pools and volumes: reading both, changing pools. No Django here.

Their XML, and building new ones, is in webvirt.virt.storagexml; changing volumes and streaming
their contents is in webvirt.virt.volumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import libvirt
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.storagexml import FILE_POOLS, MIB, POOL_LABELS, POOL_TYPES, Pool, Volume

_STATES = {libvirt.VIR_STORAGE_POOL_INACTIVE: "inactive", libvirt.VIR_STORAGE_POOL_BUILDING: "building",
           libvirt.VIR_STORAGE_POOL_RUNNING: "running", libvirt.VIR_STORAGE_POOL_DEGRADED: "degraded",
           libvirt.VIR_STORAGE_POOL_INACCESSIBLE: "inaccessible"}


# Reading ----------------------------------------------------------------------------------------

@dataclass
class PoolInfo:
    uuid: str
    name: str
    type: str
    state: str
    active: bool
    autostart: bool
    persistent: bool
    capacity: int
    allocation: int
    available: int
    target_path: str
    source: str
    volumes: int | None

    @property
    def used_percent(self) -> int:
        return round(100 * self.allocation / self.capacity) if self.capacity else 0

    @property
    def type_label(self) -> str:
        return POOL_LABELS.get(self.type, self.type)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "used_percent": self.used_percent}


@dataclass
class VolumeInfo:
    name: str
    pool_uuid: str
    pool_name: str
    path: str
    format: str
    capacity: int
    allocation: int
    backing_path: str
    used_by: list[str]  # domain names
    backs: list[str]  # paths of volumes whose backing file this is (linked clones)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virStoragePool:
    try:
        return conn.storagePoolLookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_INVALID_ARG):
            raise VirtError("That storage pool no longer exists on its host.", errors.NOT_FOUND) from None
        raise


def volume_lookup(conn: libvirt.virConnect, pool_uuid: str, name: str) -> libvirt.virStorageVol:
    pool = pool_lookup(conn, pool_uuid)
    if not pool.isActive():
        raise VirtError(f"Pool {pool.name()} is not running; start it to reach its volumes.", errors.STATE)
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise VirtError(f"Pool {pool.name()} has no volume named '{name}'.", errors.NOT_FOUND) from None
        raise


def pool_info(pool: libvirt.virStoragePool) -> PoolInfo:
    doc = Pool.from_string(pool.XMLDesc(0))
    state, capacity, allocation, available = pool.info()
    active = bool(pool.isActive())
    volumes = None
    if active:
        try:
            volumes = pool.numOfVolumes()
        except libvirt.libvirtError:
            volumes = None
    return PoolInfo(uuid=pool.UUIDString(), name=pool.name(), type=doc.type or "", state=_STATES.get(state, "unknown"),
                    active=active, autostart=bool(pool.autostart()) if pool.isPersistent() else False,
                    persistent=bool(pool.isPersistent()), capacity=capacity, allocation=allocation,
                    available=available, target_path=doc.target_path or "", source=doc.source, volumes=volumes)


def list_pools(conn: libvirt.virConnect) -> list[PoolInfo]:
    found = errors.read_present(conn.listAllStoragePools(0), pool_info, libvirt.VIR_ERR_NO_STORAGE_POOL)
    return sorted(found, key=lambda p: p.name)


def get_pool(conn: libvirt.virConnect, uuid: str) -> PoolInfo:
    return pool_info(pool_lookup(conn, uuid))


def offered_types(conn: libvirt.virConnect) -> list[str]:
    """The pool types webvirt makes that this host's libvirt supports (all of them if it cannot say)."""
    try:
        caps = etree.fromstring(conn.getStoragePoolCapabilities(0).encode())
    except libvirt.libvirtError:
        return list(POOL_TYPES)
    supported = {p.get("type") for p in caps.findall("./pool") if p.get("supported") == "yes"}
    return [t for t in POOL_TYPES if t in supported]


def disk_users(conn: libvirt.virConnect) -> dict[str, list[str]]:
    """Path of every disk source -> names of the domains (any state) that use it."""
    users: dict[str, list[str]] = {}
    for dom in conn.listAllDomains(0):
        try:
            doc = DomainXML.from_string(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        for disk in doc.disks:
            path = disk.source_file or disk.source_dev
            if disk.source_pool and disk.source_volume:
                try:
                    path = conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(
                        disk.source_volume).path()
                except libvirt.libvirtError:
                    path = f"{disk.source_pool}/{disk.source_volume}"
            if path:
                users.setdefault(path, []).append(dom.name())
    return users


def backing_users(conn: libvirt.virConnect) -> dict[str, list[str]]:
    """Backing file path -> paths of the volumes (in any active pool) layered on it."""
    backs: dict[str, list[str]] = {}
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        for vol in pool.listAllVolumes(0):
            try:
                doc = Volume.from_string(vol.XMLDesc(0))
            except libvirt.libvirtError:
                continue
            if doc.backing_path:
                backs.setdefault(doc.backing_path, []).append(vol.path())
    return backs


def volume_info(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol, users: dict[str, list[str]],
                backs: dict[str, list[str]]) -> VolumeInfo:
    doc = Volume.from_string(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    path = vol.path()
    return VolumeInfo(name=vol.name(), pool_uuid=pool.UUIDString(), pool_name=pool.name(), path=path,
                      format=doc.format or "", capacity=capacity, allocation=allocation,
                      backing_path=doc.backing_path or "", used_by=sorted(set(users.get(path, []))),
                      backs=sorted(backs.get(path, [])))


def list_volumes(conn: libvirt.virConnect, pool_uuid: str) -> list[VolumeInfo]:
    pool = pool_lookup(conn, pool_uuid)
    if not pool.isActive():
        return []
    users, backs = disk_users(conn), backing_users(conn)
    found = errors.read_present(pool.listAllVolumes(0), lambda vol: volume_info(pool, vol, users, backs),
                                libvirt.VIR_ERR_NO_STORAGE_VOL)
    return sorted(found, key=lambda v: v.name)


def get_volume(conn: libvirt.virConnect, pool_uuid: str, name: str) -> VolumeInfo:
    vol = volume_lookup(conn, pool_uuid, name)
    return volume_info(pool_lookup(conn, pool_uuid), vol, disk_users(conn), backing_users(conn))


def iso_volumes(conn: libvirt.virConnect) -> list[VolumeInfo]:
    """Volumes that look like CD/DVD images (*.iso), in every active pool: for changing CD-ROM media."""
    found = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        for vol in pool.listAllVolumes(0):
            if vol.name().lower().endswith(".iso"):
                found.append(volume_info(pool, vol, {}, {}))
    return sorted(found, key=lambda v: (v.pool_name, v.name))


def all_volumes(conn: libvirt.virConnect) -> list[VolumeInfo]:
    """Every volume of every active pool with its users (for attaching disks)."""
    users = disk_users(conn)
    found = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        for vol in pool.listAllVolumes(0):
            found.append(volume_info(pool, vol, users, {}))
    return sorted(found, key=lambda v: (v.pool_name, v.name))


def pool_xml_of(conn: libvirt.virConnect, uuid: str, inactive: bool = False) -> str:
    pool = pool_lookup(conn, uuid)
    if inactive and pool.isPersistent():
        try:
            return str(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
    return str(pool.XMLDesc(0))


def volume_xml_of(conn: libvirt.virConnect, pool_uuid: str, name: str) -> str:
    return str(volume_lookup(conn, pool_uuid, name).XMLDesc(0))


# Pools: changing --------------------------------------------------------------------------------

def _parsed_pool(xml: str) -> Pool:
    doc = Pool.from_string(xml)
    if not (doc.name or "").strip():
        raise VirtError("The pool XML needs a <name>.", errors.INVALID)
    return doc


def define_pool(conn: libvirt.virConnect, xml: str, start: bool = True, build: bool = False,
                autostart: bool = False) -> PoolInfo:
    """Define a pool, optionally build (e.g. create its directory) and start it; on failure, remove it again."""
    doc = _parsed_pool(xml)
    errors.refuse_taken(lambda: conn.storagePoolLookupByName(doc.name),
                        f"A storage pool named '{doc.name}' already exists on this host. Choose another name.")
    try:
        pool = conn.storagePoolDefineXML(doc.to_string(), libvirt.VIR_STORAGE_POOL_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        pool = conn.storagePoolDefineXML(doc.to_string(), 0)
    step = "build"
    try:
        if build:
            # Never overwrite an existing file system or partition table; a directory is simply made.
            pool.build(libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE if doc.type in ("disk", "logical", "fs") else 0)
        step = "start"
        if start:
            pool.create(0)
        if autostart:
            pool.setAutostart(1)
    except libvirt.libvirtError as exc:
        for undo in (pool.destroy, pool.undefine):
            try:
                undo()
            except libvirt.libvirtError:
                pass
        failure = errors.from_libvirt(exc)
        raise VirtError(f"libvirt could not {step} pool {doc.name}, so it was not created: {failure.message}",
                        errors.INVALID if failure.kind == errors.OTHER else failure.kind, detail=str(exc)) from None
    return pool_info(pool)


def start_pool(conn: libvirt.virConnect, uuid: str) -> PoolInfo:
    pool = pool_lookup(conn, uuid)
    if pool.isActive():
        raise VirtError(f"Pool {pool.name()} is already running.", errors.STATE)
    pool.create(0)
    return pool_info(pool)


def _paths_in_use(conn: libvirt.virConnect, pool: libvirt.virStoragePool, running_only: bool) -> dict[str, list[str]]:
    if not pool.isActive():
        return {}
    users = disk_users(conn)
    if running_only:
        running = {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        users = {p: [n for n in names if n in running] for p, names in users.items()}
    paths = {vol.path() for vol in pool.listAllVolumes(0)}
    return {p: names for p, names in users.items() if p in paths and names}


def _describe(in_use: dict[str, list[str]]) -> str:
    return "; ".join(f"{path} by {', '.join(sorted(set(names)))}" for path, names in sorted(in_use.items())[:5])


def stop_pool(conn: libvirt.virConnect, uuid: str) -> PoolInfo:
    pool = pool_lookup(conn, uuid)
    if not pool.isActive():
        raise VirtError(f"Pool {pool.name()} is not running.", errors.STATE)
    in_use = _paths_in_use(conn, pool, running_only=True)
    if in_use:
        raise VirtError(f"Running domains use volumes of pool {pool.name()}: {_describe(in_use)}. "
                        "Shut them down first.", errors.STATE)
    pool.destroy()
    return pool_info(pool)


def refresh_pool(conn: libvirt.virConnect, uuid: str) -> PoolInfo:
    pool = pool_lookup(conn, uuid)
    if not pool.isActive():
        raise VirtError(f"Pool {pool.name()} is not running, so there is nothing to refresh.", errors.STATE)
    pool.refresh(0)
    return pool_info(pool)


def set_pool_autostart(conn: libvirt.virConnect, uuid: str, enabled: bool) -> PoolInfo:
    pool = pool_lookup(conn, uuid)
    if not pool.isPersistent():
        raise VirtError(f"Pool {pool.name()} is transient; only a defined pool can autostart.", errors.STATE)
    pool.setAutostart(1 if enabled else 0)
    return pool_info(pool)


def check_space(pool: libvirt.virStoragePool, needed: int, what: str) -> None:
    """Refuse (INVALID, with the figures) when `pool` has less than `needed` bytes free for `what`."""
    pool.refresh(0)
    _state, capacity, _allocation, available = pool.info()
    if needed > available:
        raise VirtError(f"{what} needs {needed / MIB:,.0f} MiB but pool {pool.name()} has only "
                        f"{available / MIB:,.0f} MiB free (of {capacity / MIB:,.0f} MiB).", errors.INVALID)


def refuse_bases(paths: list[str], bases: dict[str, str]) -> None:
    """A template's base volume (path -> template name in `bases`) is never deleted."""
    hit = [path for path in paths if path in bases]
    if hit:
        raise VirtError(f"{hit[0]} is a base disk of template {bases[hit[0]]}; delete the template first.",
                        errors.STATE)


def delete_pool(conn: libvirt.virConnect, uuid: str, delete_volumes: bool = False,
                bases: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Remove a pool, and with `delete_volumes` everything in it. Refused while any domain uses a volume of it,
    or (with `delete_volumes`) while it holds a template's base volume (`bases`: path -> template name).

    Returns the pool's name and the paths of the volumes deleted.
    """
    pool = pool_lookup(conn, uuid)
    name = pool.name()
    in_use = _paths_in_use(conn, pool, running_only=False)
    if in_use:
        raise VirtError(f"Domains use volumes of pool {name}: {_describe(in_use)}. Detach those disks or remove "
                        "the domains first.", errors.STATE)
    deleted: list[str] = []
    if delete_volumes:
        if not pool.isActive():
            raise VirtError(f"Pool {name} must be running to delete its volumes. Start it first, or delete only "
                            "the pool's definition.", errors.STATE)
        refuse_bases([vol.path() for vol in pool.listAllVolumes(0)], bases or {})
        for vol in pool.listAllVolumes(0):
            path = vol.path()
            vol.delete(0)
            deleted.append(path)
        doc = Pool.from_string(pool.XMLDesc(0))
        if doc.type in FILE_POOLS:
            pool.destroy()
            try:
                pool.delete(0)  # the now-empty directory
            except libvirt.libvirtError:
                pass
    if pool.isActive():
        pool.destroy()
    if pool.isPersistent():
        pool.undefine()
    return name, deleted


def redefine_pool(conn: libvirt.virConnect, uuid: str, xml: str) -> PoolInfo:
    """Replace a pool's definition after libvirt validates it; a rejected edit changes nothing."""
    pool = pool_lookup(conn, uuid)
    if not pool.isPersistent():
        raise VirtError(f"Pool {pool.name()} is transient; its XML cannot be edited.", errors.STATE)
    doc = _parsed_pool(xml)
    if doc.uuid is None:
        doc.uuid = uuid
    if doc.uuid.lower() != uuid.lower():
        raise VirtError("The edited XML has a different <uuid>. Keep the pool's own UUID.", errors.INVALID)
    if doc.name != pool.name():
        raise VirtError(f"The edited XML renames the pool to '{doc.name}'. Keep <name>{pool.name()}</name>.",
                        errors.INVALID)
    try:
        conn.storagePoolDefineXML(doc.to_string(), libvirt.VIR_STORAGE_POOL_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG) or \
                "unsupported flags" not in str(exc):
            raise
        conn.storagePoolDefineXML(doc.to_string(), 0)
    return pool_info(pool)
