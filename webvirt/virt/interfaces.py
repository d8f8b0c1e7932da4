"""Host interfaces (virsh iface-*): list, XML, and defining, starting and stopping bridges where supported.

libvirt on Debian uses the udev backend, which lists interfaces but cannot define, start or stop them;
netcf hosts (and the test driver) can. Unsupported calls become one clear VirtError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import libvirt

from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.storagexml import check_name
from webvirt.virt.xmlobj import XMLObject, XMLProperty

UNSUPPORTED = ("This host's libvirt can list its interfaces but not {verb} them (its interface backend is udev, "
               "not netcf). Configure bridges with the host's own network tools instead, for example "
               "/etc/network/interfaces or NetworkManager.")


class Interface(XMLObject):
    tag = "interface"
    type = XMLProperty[str]("@type")
    name = XMLProperty[str]("@name")
    mac = XMLProperty[str]("./mac/@address")
    link_state = XMLProperty[str]("./link/@state")
    start_mode = XMLProperty[str]("./start/@mode")
    bridge_stp = XMLProperty[str]("./bridge/@stp")
    bridge_delay = XMLProperty[int]("./bridge/@delay", kind=int)

    @property
    def addresses(self) -> list[str]:
        found = []
        for ip in self.node.findall("./protocol/ip"):
            address = ip.get("address")
            if address:
                found.append(f"{address}/{ip.get('prefix')}" if ip.get("prefix") else address)
        return found

    @property
    def members(self) -> list[str]:
        """The names of a bridge's ports, which are <interface> elements too."""
        return [port.name or "" for port in self.children("./bridge/interface", Interface)]


@dataclass
class InterfaceInfo:
    name: str
    mac: str
    active: bool
    type: str
    addresses: list[str]
    members: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unsupported(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED)


def _info(iface: libvirt.virInterface) -> InterfaceInfo:
    doc = Interface.from_string(iface.XMLDesc(0))
    return InterfaceInfo(name=iface.name(), mac=iface.MACString() or doc.mac or "", active=bool(iface.isActive()),
                         type=doc.type or "", addresses=doc.addresses, members=doc.members)


def list_interfaces(conn: libvirt.virConnect) -> list[InterfaceInfo]:
    try:
        ifaces = conn.listAllInterfaces(0)
    except libvirt.libvirtError as exc:
        if _unsupported(exc):
            raise VirtError("This host's libvirt cannot list its network interfaces.", errors.UNSUPPORTED) from None
        raise
    return sorted((_info(i) for i in ifaces), key=lambda i: i.name)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virInterface:
    try:
        return conn.interfaceLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_INTERFACE, libvirt.VIR_ERR_INVALID_ARG):
            raise VirtError(f"The host has no interface named '{name}'.", errors.NOT_FOUND) from None
        raise


def interface_xml(conn: libvirt.virConnect, name: str) -> str:
    return str(lookup(conn, name).XMLDesc(0))


def bridge_xml(name: str, members: list[str], stp: bool = False, start_mode: str = "none") -> str:
    doc = Interface.new(type="bridge", name=check_name(name, "bridge"), start_mode=start_mode,
                        bridge_stp="on" if stp else "off", bridge_delay=0)
    for member in members:
        if member.strip():
            doc.add(Interface, "./bridge", type="ethernet", name=member.strip())
    return doc.to_string()


def define_bridge(conn: libvirt.virConnect, name: str, members: list[str], stp: bool = False,
                  start: bool = False) -> InterfaceInfo:
    errors.refuse_taken(lambda: conn.interfaceLookupByName(name), f"The host already has an interface named '{name}'.")
    try:
        iface = conn.interfaceDefineXML(bridge_xml(name, members, stp), 0)
    except libvirt.libvirtError as exc:
        if _unsupported(exc):
            raise VirtError(UNSUPPORTED.format(verb="define"), errors.UNSUPPORTED, detail=str(exc)) from None
        raise
    if start:
        try:
            iface.create(0)
        except libvirt.libvirtError as exc:
            iface.undefine()
            raise errors.from_libvirt(exc) from None
    return _info(iface)


def _change(conn: libvirt.virConnect, name: str, verb: str, fn_name: str, *args: int) -> libvirt.virInterface:
    """Call `fn_name` on the interface; the interface, for callers that describe it afterwards."""
    iface = lookup(conn, name)
    try:
        getattr(iface, fn_name)(*args)
    except libvirt.libvirtError as exc:
        if _unsupported(exc):
            raise VirtError(UNSUPPORTED.format(verb=verb), errors.UNSUPPORTED, detail=str(exc)) from None
        raise
    return iface


def start(conn: libvirt.virConnect, name: str) -> InterfaceInfo:
    if lookup(conn, name).isActive():
        raise VirtError(f"Interface {name} is already up.", errors.STATE)
    return _info(_change(conn, name, "start", "create", 0))


def stop(conn: libvirt.virConnect, name: str) -> InterfaceInfo:
    if not lookup(conn, name).isActive():
        raise VirtError(f"Interface {name} is already down.", errors.STATE)
    return _info(_change(conn, name, "stop", "destroy", 0))


def undefine(conn: libvirt.virConnect, name: str) -> None:
    if lookup(conn, name).isActive():
        raise VirtError(f"Interface {name} is up; stop it before removing its definition.", errors.STATE)
    _change(conn, name, "remove", "undefine")


def redefine(conn: libvirt.virConnect, name: str, xml: str) -> InterfaceInfo:
    """Replace an interface's definition; a rejected or unsupported edit changes nothing."""
    lookup(conn, name)
    doc = Interface.from_string(xml)
    if doc.name != name:
        raise VirtError(f"The edited XML names the interface '{doc.name}'. Keep name='{name}'.",
                        errors.INVALID)
    try:
        conn.interfaceDefineXML(doc.to_string(), 0)
    except libvirt.libvirtError as exc:
        if _unsupported(exc):
            raise VirtError(UNSUPPORTED.format(verb="redefine"), errors.UNSUPPORTED, detail=str(exc)) from None
        raise
    return _info(lookup(conn, name))
