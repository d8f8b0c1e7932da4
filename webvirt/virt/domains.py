"""Domain operations on a libvirt connection: read state, lifecycle actions, XML define and edit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import libvirt

from webvirt.virt import chains, errors
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.seed import seed_paths

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
STATE_LABELS = {"nostate": "no state", "running": "running", "blocked": "blocked", "paused": "paused",
                "shutdown": "shutting down", "shutoff": "shut off", "crashed": "crashed",
                "pmsuspended": "suspended by guest"}

_REASONS = {
    "running": ["unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled",
                "save canceled", "wakeup", "crashed", "post-copy", "post-copy failed"],
    "paused": ["unknown", "user", "migration", "save", "dump", "I/O error", "watchdog", "from snapshot",
               "shutting down", "snapshot", "crashed", "starting up", "post-copy", "post-copy failed"],
    "shutoff": ["unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot",
                "daemon"],
    "shutdown": ["unknown", "user"],
    "crashed": ["unknown", "panicked"],
    "blocked": ["unknown"],
    "pmsuspended": ["unknown"],
    "nostate": ["unknown"],
}


def state_name(code: int) -> str:
    return STATES.get(code, "nostate")


def reason_name(state: str, code: int) -> str:
    reasons = _REASONS.get(state, [])
    return reasons[code] if 0 <= code < len(reasons) else "unknown"


@dataclass
class DomainState:
    """What lists need to know about one domain, read in as few calls as libvirt allows."""

    uuid: str
    name: str
    state: str
    reason: str
    vcpus: int
    memory_mib: int
    autostart: bool
    persistent: bool
    graphics: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_state(dom: libvirt.virDomain) -> DomainState:
    state_code, reason_code = dom.state()
    _state, max_mem_kib, _mem_kib, vcpus, _cpu_time = dom.info()
    state = state_name(state_code)
    xml = DomainXML.from_string(dom.XMLDesc(0))
    return DomainState(
        uuid=dom.UUIDString(),
        name=dom.name(),
        state=state,
        reason=reason_name(state, reason_code),
        vcpus=vcpus,
        memory_mib=max_mem_kib // 1024,
        autostart=bool(dom.autostart()) if dom.isPersistent() else False,
        persistent=bool(dom.isPersistent()),
        graphics=xml.graphics_type,
    )


def list_states(conn: libvirt.virConnect) -> list[DomainState]:
    return errors.read_present(conn.listAllDomains(0), read_state, libvirt.VIR_ERR_NO_DOMAIN)


def lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise VirtError("That domain no longer exists on its host.", errors.NOT_FOUND) from None
        raise


# Lifecycle actions: name -> (verb for messages, states it is allowed in, the call).
@dataclass(frozen=True)
class Action:
    name: str
    label: str
    allowed: frozenset[str]
    run: Callable[[libvirt.virDomain], object]
    destructive: bool = False


ACTIONS: dict[str, Action] = {a.name: a for a in [
    Action("start", "start", frozenset({"shutoff", "crashed"}), lambda d: d.create()),
    Action("shutdown", "shut down", frozenset({"running", "blocked", "paused"}), lambda d: d.shutdown(),
           destructive=True),
    Action("reboot", "reboot", frozenset({"running", "blocked"}), lambda d: d.reboot(0), destructive=True),
    Action("suspend", "suspend", frozenset({"running", "blocked"}), lambda d: d.suspend()),
    Action("resume", "resume", frozenset({"paused"}), lambda d: d.resume()),
    Action("destroy", "force off", frozenset({"running", "blocked", "paused", "shutdown", "crashed",
                                              "pmsuspended"}), lambda d: d.destroy(), destructive=True),
    Action("reset", "reset", frozenset({"running", "blocked", "paused"}), lambda d: d.reset(0), destructive=True),
]}


def run_action(conn: libvirt.virConnect, uuid: str, name: str) -> DomainState:
    """Run one lifecycle action after checking that the domain's state allows it."""
    action = ACTIONS.get(name)
    if action is None:
        raise VirtError(f"'{name}' is not an action webvirt knows. Use one of: {', '.join(ACTIONS)}.",
                        errors.INVALID)
    dom = lookup(conn, uuid)
    state = state_name(dom.state()[0])
    if state not in action.allowed:
        raise VirtError(f"{dom.name()} is {STATE_LABELS[state]}, so it cannot {action.label}. "
                        f"That needs it to be {' or '.join(sorted(STATE_LABELS[s] for s in action.allowed))}.",
                        errors.STATE)
    action.run(dom)
    return read_state(dom)


def start_paused(conn: libvirt.virConnect, uuid: str) -> None:
    """Start a defined domain paused where the driver can (the test driver starts it running).

    Nothing is read back: a bulk start under emulation waits on busy QEMU monitors for every read.
    """
    dom = lookup(conn, uuid)
    try:
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        dom.create()


def resume_if_paused(conn: libvirt.virConnect, uuid: str) -> DomainState:
    dom = lookup(conn, uuid)
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    return read_state(dom)


def set_title(conn: libvirt.virConnect, uuid: str, title: str) -> None:
    """Set the domain's <title>, live too when it runs: libvirt renames only shut-off domains, so a
    running machine handed to someone carries the name they asked for here."""
    dom = lookup(conn, uuid)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, title, None, None, flags)


def stays_running(conn: libvirt.virConnect, uuid: str, seconds: float) -> bool:
    """Is the domain still running after `seconds`? A guest whose kernel panics or that powers off
    while it boots is not: the boot check of a guest that prints no ready line on its console."""
    dom = lookup(conn, uuid)
    deadline = time.monotonic() + seconds
    while True:
        if dom.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def set_autostart(conn: libvirt.virConnect, uuid: str, enabled: bool) -> DomainState:
    dom = lookup(conn, uuid)
    if not dom.isPersistent():
        raise VirtError(f"{dom.name()} is transient; only a defined (persistent) domain can autostart.",
                        errors.STATE)
    dom.setAutostart(1 if enabled else 0)
    return read_state(dom)


def domain_xml(conn: libvirt.virConnect, uuid: str, inactive: bool = False) -> str:
    dom = lookup(conn, uuid)
    flags = 0  # Never VIR_DOMAIN_XML_SECURE: graphics passwords stay out of shown XML.
    if inactive and dom.isPersistent():
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    return str(dom.XMLDesc(flags))


def _validated(xml: str) -> DomainXML:
    doc = DomainXML.from_string(xml)
    if not (doc.name or "").strip():
        raise VirtError("The domain XML needs a <name>.", errors.INVALID)
    return doc


def refuse_taken_name(conn: libvirt.virConnect, name: str) -> None:
    errors.refuse_taken(lambda: conn.lookupByName(name),
                        f"A domain named '{name}' already exists on this host. Choose another name.")


def define(conn: libvirt.virConnect, xml: str, transient: bool = False) -> DomainState:
    """Define a persistent domain (virsh define) or start a transient one (virsh create)."""
    doc = _validated(xml)
    refuse_taken_name(conn, doc.name or "")
    if transient:
        dom = conn.createXML(doc.to_string(), libvirt.VIR_DOMAIN_START_VALIDATE)
    else:
        dom = conn.defineXMLFlags(doc.to_string(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    return read_state(dom)


def redefine(conn: libvirt.virConnect, uuid: str, xml: str) -> DomainState:
    """Replace a persistent domain's definition (virsh edit). A rejected edit changes nothing."""
    dom = lookup(conn, uuid)
    if not dom.isPersistent():
        raise VirtError(f"{dom.name()} is transient; its XML cannot be edited. Define it first.", errors.STATE)
    doc = _validated(xml)
    if doc.uuid is None:
        doc.uuid = uuid
    if doc.uuid.lower() != uuid.lower():
        raise VirtError("The edited XML has a different <uuid>. Keep the domain's own UUID.", errors.INVALID)
    if doc.name != dom.name():
        raise VirtError(f"The edited XML renames the domain to '{doc.name}'. Renaming is not done by editing "
                        f"XML; keep <name>{dom.name()}</name>.", errors.INVALID)
    conn.defineXMLFlags(doc.to_string(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    return read_state(dom)


def undefine(conn: libvirt.virConnect, uuid: str, delete_volumes: bool = False,
             keep: frozenset[str] = frozenset()) -> list[str]:
    """Remove a domain's definition and snapshots (stopping a transient one); optionally delete its disk
    volumes, the files of its external snapshots included, but never those in `keep` (templates' bases).

    Returns the paths of the volumes deleted. Volumes are only deleted when libvirt's storage
    knows them, so a disk outside every pool is never removed by accident.
    """
    dom = lookup(conn, uuid)
    volumes = _domain_volumes(conn, dom, keep) if delete_volumes else []
    state = state_name(dom.state()[0])
    if state not in ("shutoff", "crashed") and dom.isPersistent():
        raise VirtError(f"{dom.name()} is {STATE_LABELS[state]}. Force it off before undefining it.", errors.STATE)
    if dom.isPersistent():
        _undefine_with_everything(dom)
    else:
        dom.destroy()
    deleted = []
    for vol in volumes:
        path = vol.path()
        vol.delete(0)
        deleted.append(path)
    return deleted


# What goes with a definition, most first: a driver that refuses a flag (the test driver knows no NVRAM
# or checkpoints) is asked again with fewer, but never without the snapshots' metadata while there is some.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    0,
)


def _undefine_with_everything(dom: libvirt.virDomain) -> None:
    for flags in UNDEFINE_FLAGS:
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if flags == 0 or exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise


def remove(conn: libvirt.virConnect, uuid: str, delete_volumes: bool = True,
           keep: frozenset[str] = frozenset()) -> list[str]:
    """Force off (if running) and undefine a domain, deleting its volumes; [] when it is gone already."""
    try:
        dom = lookup(conn, uuid)
    except VirtError:
        return []
    if dom.isActive():
        dom.destroy()
    if not dom.isPersistent():
        return []
    return undefine(conn, uuid, delete_volumes=delete_volumes, keep=keep)


def _domain_volumes(conn: libvirt.virConnect, dom: libvirt.virDomain,
                    keep: frozenset[str]) -> list[libvirt.virStorageVol]:
    found = {vol.path(): vol for vol in _disk_volumes(conn, dom)}
    # What external snapshots made and stood on, and the domain's cloud-init seed: a CD-ROM image, but
    # its own (its metadata names it), also when the CD-ROM has been ejected since.
    owned = chains.owned(conn, dom) | set(seed_paths(dom.XMLDesc(0)))
    for path in owned - found.keys():
        vol = chains.volume_at(conn, path)
        if vol is not None:
            found[path] = vol
    return [vol for path, vol in found.items() if path not in keep]


def _disk_volumes(conn: libvirt.virConnect, dom: libvirt.virDomain) -> list[libvirt.virStorageVol]:
    doc = DomainXML.from_string(dom.XMLDesc(0))
    found = []
    for disk in doc.disks:
        if disk.device not in (None, "disk"):
            continue  # CD-ROM images are shared; never delete them with a domain.
        try:
            if disk.source_pool and disk.source_volume:
                found.append(conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(disk.source_volume))
            elif disk.source_file or disk.source_dev:
                found.append(conn.storageVolLookupByPath(disk.source_file or disk.source_dev))
        except libvirt.libvirtError:
            continue
    return found
