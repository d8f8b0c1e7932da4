"""Virtual networks: reading them, their DHCP leases and static hosts, and the operations webvirt offers.

Their XML, and building new ones, is in webvirt.virt.netxml.

No Django here. Every function takes an open connection; the caller adds timeouts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

import libvirt

from webvirt.virt import errors
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.netxml import MODE_LABELS, DHCPHost, Network, address_in

_LIVE = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
_CONFIG = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


# Reading ----------------------------------------------------------------------------------------

@dataclass
class NetworkInfo:
    uuid: str
    name: str
    active: bool
    autostart: bool
    persistent: bool
    mode: str
    bridge: str
    ipv4: list[str]
    ipv6: list[str]
    dhcp_ranges: list[str]
    leases: int | None  # None: the driver cannot say

    @property
    def mode_label(self) -> str:
        return MODE_LABELS.get(self.mode, self.mode)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virNetwork:
    try:
        return conn.networkLookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_INVALID_ARG):
            raise VirtError("That network no longer exists on its host.", errors.NOT_FOUND) from None
        raise


def _leases(net: libvirt.virNetwork, mac: str | None = None) -> list[dict[str, Any]] | None:
    if not net.isActive():
        return []
    try:
        return cast('list[dict[Any, Any]] | None', net.DHCPLeases(mac) if mac else net.DHCPLeases())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return None
        raise


def info(net: libvirt.virNetwork) -> NetworkInfo:
    doc = Network.from_string(net.XMLDesc(0))
    ips = doc.ips
    leases = _leases(net)
    return NetworkInfo(
        uuid=net.UUIDString(), name=net.name(), active=bool(net.isActive()),
        autostart=bool(net.autostart()) if net.isPersistent() else False, persistent=bool(net.isPersistent()),
        mode=doc.mode, bridge=doc.bridge or "",
        ipv4=[ip.cidr for ip in ips if not ip.is_v6], ipv6=[ip.cidr for ip in ips if ip.is_v6],
        dhcp_ranges=[f"{r.start}-{r.end}" for ip in ips for r in ip.ranges],
        leases=None if leases is None else len(leases))


def list_networks(conn: libvirt.virConnect) -> list[NetworkInfo]:
    found = errors.read_present(conn.listAllNetworks(0), info, libvirt.VIR_ERR_NO_NETWORK)
    return sorted(found, key=lambda n: n.name)


def get(conn: libvirt.virConnect, uuid: str) -> NetworkInfo:
    return info(lookup(conn, uuid))


def network_xml_of(conn: libvirt.virConnect, uuid: str, inactive: bool = False) -> str:
    net = lookup(conn, uuid)
    if inactive and net.isPersistent():
        try:
            return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise  # The test driver has no inactive flag: its live XML is the definition.
    return str(net.XMLDesc(0))


def domains_using(conn: libvirt.virConnect, name: str, active_only: bool = True) -> list[str]:
    """Names of the domains with an interface on network `name` (running ones only, by default)."""
    flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if active_only else 0
    users = []
    for dom in conn.listAllDomains(flags):
        try:
            doc = DomainXML.from_string(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        if any(i.type == "network" and i.source_network == name for i in doc.interfaces):
            users.append(dom.name())
    return sorted(users)


def mac_owners(conn: libvirt.virConnect) -> dict[str, tuple[str, str]]:
    """MAC address (lower case) -> (domain UUID, domain name), for every domain on the host."""
    owners = {}
    for dom in conn.listAllDomains(0):
        try:
            doc = DomainXML.from_string(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        for iface in doc.interfaces:
            if iface.mac:
                owners[iface.mac.lower()] = (dom.UUIDString(), dom.name())
    return owners


@dataclass
class Lease:
    mac: str
    ip: str
    prefix: int
    hostname: str
    expires: str  # ISO 8601, UTC
    domain_uuid: str = ""
    domain_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def leases(conn: libvirt.virConnect, uuid: str) -> list[Lease] | None:
    """The network's DHCP leases and which domain holds each; None when the driver cannot list them."""
    raw = _leases(lookup(conn, uuid))
    if raw is None:
        return None
    owners = mac_owners(conn) if raw else {}
    found = []
    for lease in raw:
        mac = (lease.get("mac") or "").lower()
        owner = owners.get(mac, ("", ""))
        expiry = lease.get("expirytime") or 0
        found.append(Lease(mac=mac, ip=lease.get("ipaddr") or "", prefix=lease.get("prefix") or 0,
                           hostname=lease.get("hostname") or "",
                           expires=datetime.fromtimestamp(expiry, UTC).isoformat() if expiry else "",
                           domain_uuid=owner[0], domain_name=owner[1]))
    return sorted(found, key=lambda le: ipaddress.ip_address(le.ip) if le.ip else ipaddress.ip_address(0))


# Checks against the host ------------------------------------------------------------------------

def _existing_subnets(conn: libvirt.virConnect, skip_uuid: str = "") -> list[tuple[str, Subnet]]:
    subnets: list[tuple[str, Subnet]] = []
    for net in conn.listAllNetworks(0):
        if skip_uuid and net.UUIDString().lower() == skip_uuid.lower():
            continue
        doc = Network.from_string(net.XMLDesc(0))
        for ip in doc.ips:
            if ip.interface is not None:
                subnets.append((net.name(), ip.interface.network))
    return subnets


def check_against_host(conn: libvirt.virConnect, doc: Network, skip_uuid: str = "") -> None:
    """Refuse a network whose addresses overlap another network's on this host, or whose bridge is missing."""
    existing = _existing_subnets(conn, skip_uuid)
    for ip in doc.ips:
        mine = ip.interface.network if ip.interface is not None else None
        if mine is None:
            continue
        for other_name, other in existing:
            if other.version == mine.version and mine.overlaps(other):
                raise VirtError(f"{mine} overlaps {other}, the addresses of network '{other_name}' on this host. "
                                "Choose a range no other network uses.", errors.CONFLICT)
    if doc.mode == "bridge" and doc.bridge:
        check_bridge_exists(conn, doc.bridge)


def check_bridge_exists(conn: libvirt.virConnect, bridge: str) -> None:
    try:
        names = {iface.name() for iface in conn.listAllInterfaces(0)}
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return  # The host cannot list its interfaces; libvirt itself reports a missing bridge at start.
        raise
    if bridge not in names:
        raise VirtError(f"The host has no interface named '{bridge}'. Create the bridge on the host first, or "
                        f"choose one of: {', '.join(sorted(names)) or 'none'}.", errors.INVALID)


# Changing ---------------------------------------------------------------------------------------

def _define(conn: libvirt.virConnect, xml: str) -> libvirt.virNetwork:
    try:
        return conn.networkDefineXMLFlags(xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        return conn.networkDefineXML(xml)


def _parsed(xml: str) -> Network:
    doc = Network.from_string(xml)
    if not (doc.name or "").strip():
        raise VirtError("The network XML needs a <name>.", errors.INVALID)
    return doc


def define(conn: libvirt.virConnect, xml: str, start: bool = True, autostart: bool = False) -> NetworkInfo:
    """Define a network from XML and optionally start it. If starting fails, the definition is removed."""
    doc = _parsed(xml)
    errors.refuse_taken(lambda: conn.networkLookupByName(doc.name),
                        f"A network named '{doc.name}' already exists on this host. Choose another name.")
    check_against_host(conn, doc)
    net = _define(conn, doc.to_string())
    try:
        if start:
            net.create()
        if autostart:
            net.setAutostart(1)
    except libvirt.libvirtError as exc:
        _undo_define(net)
        raise VirtError(f"libvirt defined network {doc.name} but could not start it, so it was removed again: "
                        f"{errors.from_libvirt(exc).message}", errors.from_libvirt(exc).kind,
                        detail=str(exc)) from None
    return info(net)


def _undo_define(net: libvirt.virNetwork) -> None:
    for step in (net.destroy, net.undefine):
        try:
            step()
        except libvirt.libvirtError:
            pass


def start(conn: libvirt.virConnect, uuid: str) -> NetworkInfo:
    net = lookup(conn, uuid)
    if net.isActive():
        raise VirtError(f"Network {net.name()} is already running.", errors.STATE)
    net.create()
    return info(net)


def stop(conn: libvirt.virConnect, uuid: str, force: bool = False) -> NetworkInfo:
    net = lookup(conn, uuid)
    if not net.isActive():
        raise VirtError(f"Network {net.name()} is not running.", errors.STATE)
    _refuse_if_used(conn, net, force, "stop")
    net.destroy()
    return info(net)


def _refuse_if_used(conn: libvirt.virConnect, net: libvirt.virNetwork, force: bool, verb: str) -> None:
    users = domains_using(conn, net.name())
    if users and not force:
        raise VirtError(f"Running domains use network {net.name()}: {', '.join(users)}. Shut them down first, "
                        f"or {verb} it anyway (they lose their connection).", errors.STATE)


def set_autostart(conn: libvirt.virConnect, uuid: str, enabled: bool) -> NetworkInfo:
    net = lookup(conn, uuid)
    if not net.isPersistent():
        raise VirtError(f"Network {net.name()} is transient; only a defined network can autostart.", errors.STATE)
    net.setAutostart(1 if enabled else 0)
    return info(net)


def delete(conn: libvirt.virConnect, uuid: str, force: bool = False) -> str:
    """Stop (if running) and undefine a network; refused while running domains use it, unless forced."""
    net = lookup(conn, uuid)
    name = net.name()
    _refuse_if_used(conn, net, force, "delete")
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()
    return str(name)


def redefine(conn: libvirt.virConnect, uuid: str, xml: str) -> tuple[NetworkInfo, list[str]]:
    """Replace a network's definition; DHCP host changes reach a running network at once.

    Returns the new state and what was applied live. libvirt validates the XML first: a rejected
    edit changes nothing.
    """
    net = lookup(conn, uuid)
    if not net.isPersistent():
        raise VirtError(f"Network {net.name()} is transient; its XML cannot be edited.", errors.STATE)
    doc = _parsed(xml)
    if doc.uuid is None:
        doc.uuid = uuid
    if doc.uuid.lower() != uuid.lower():
        raise VirtError("The edited XML has a different <uuid>. Keep the network's own UUID.", errors.INVALID)
    if doc.name != net.name():
        raise VirtError(f"The edited XML renames the network to '{doc.name}'. Keep <name>{net.name()}</name>.",
                        errors.INVALID)
    check_against_host(conn, doc, skip_uuid=uuid)
    live = Network.from_string(net.XMLDesc(0)) if net.isActive() else None
    _define(conn, doc.to_string())
    applied = _apply_dhcp_hosts_live(net, live, doc) if live is not None else []
    return info(net), applied


def _apply_dhcp_hosts_live(net: libvirt.virNetwork, live: Network, new: Network) -> list[str]:
    """Add and remove DHCP host entries on the running network to match `new`, without a restart."""
    before = {(i, h.mac, h.ip, h.name) for i, h in live.dhcp_hosts()}
    after = {(i, h.mac, h.ip, h.name) for i, h in new.dhcp_hosts()}
    applied = []
    for index, mac, ip, name in sorted(before - after, key=str):
        _update_host(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, index, {"mac": mac, "ip": ip, "name": name},
                     _LIVE)
        applied.append(f"removed DHCP host {mac or name} {ip}")
    for index, mac, ip, name in sorted(after - before, key=str):
        _update_host(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, index, {"mac": mac, "ip": ip, "name": name},
                     _LIVE)
        applied.append(f"added DHCP host {mac or name} {ip}")
    return applied


def _update_host(net: libvirt.virNetwork, command: int, index: int, host: dict[str, Any], flags: int) -> None:
    xml = DHCPHost.new(**{k: v for k, v in host.items() if v}).to_string()
    net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, index, xml, flags)


def _ipv4_index(doc: Network) -> tuple[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The first IPv4 <ip> (libvirt's parentIndex for DHCP hosts) and its address."""
    for index, ip in enumerate(doc.ips):
        if not ip.is_v6:
            if ip.interface is None:
                raise VirtError(f"The network's address {ip.address} is not valid, so it has no DHCP to add hosts to.",
                                errors.INVALID)
            return index, ip.interface
    raise VirtError("The network has no IPv4 address, so it has no DHCP to add hosts to.", errors.INVALID)


def add_dhcp_host(conn: libvirt.virConnect, uuid: str, mac: str, ip: str, name: str = "") -> NetworkInfo:
    """Add a static DHCP entry to the definition and, if running, to the live network."""
    net = lookup(conn, uuid)
    doc = Network.from_string(net.XMLDesc(0))
    index, iface = _ipv4_index(doc)
    address_in(ip, iface.network, "The static address")
    mac = mac.strip().lower()
    for _i, host in doc.dhcp_hosts():
        if (host.mac or "").lower() == mac or host.ip == ip.strip():
            raise VirtError(f"Network {net.name()} already has a DHCP entry for {host.mac or host.name} "
                            f"at {host.ip}.", errors.CONFLICT)
    flags = _CONFIG | (_LIVE if net.isActive() else 0)
    if not net.isPersistent():
        flags = _LIVE
    _update_host(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, index, {"mac": mac, "ip": ip.strip(),
                                                                          "name": name.strip()}, flags)
    return info(net)


def remove_dhcp_host(conn: libvirt.virConnect, uuid: str, mac: str) -> NetworkInfo:
    net = lookup(conn, uuid)
    doc = Network.from_string(net.XMLDesc(0))
    for index, host in doc.dhcp_hosts():
        if (host.mac or "").lower() == mac.strip().lower():
            flags = _CONFIG | (_LIVE if net.isActive() else 0) if net.isPersistent() else _LIVE
            _update_host(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, index, host.as_dict(), flags)
            return info(net)
    raise VirtError(f"Network {net.name()} has no DHCP entry for {mac}.", errors.NOT_FOUND)


def dhcp_hosts(conn: libvirt.virConnect, uuid: str) -> list[dict[str, Any]]:
    doc = Network.from_string(lookup(conn, uuid).XMLDesc(0))
    return [host.as_dict() for _i, host in doc.dhcp_hosts()]
