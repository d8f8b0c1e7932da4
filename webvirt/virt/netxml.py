"""<network> XML as objects, and the new networks webvirt writes from the create form's fields.

Checking a form's fields needs no host; checks against a host's other networks are in webvirt.virt.networks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.xmlobj import XMLObject, XMLProperty

MODES = ("nat", "route", "isolated", "bridge")
MODE_LABELS = {"nat": "NAT", "route": "routed", "isolated": "isolated", "bridge": "host bridge", "open": "open"}


# XML --------------------------------------------------------------------------------------------

class DHCPHost(XMLObject):
    tag = "host"
    mac = XMLProperty[str]("@mac")
    ip = XMLProperty[str]("@ip")
    name = XMLProperty[str]("@name")

    def as_dict(self) -> dict[str, Any]:
        return {"mac": self.mac or "", "ip": self.ip or "", "name": self.name or ""}


class DHCPRange(XMLObject):
    tag = "range"
    start = XMLProperty[str]("@start")
    end = XMLProperty[str]("@end")


class IP(XMLObject):
    tag = "ip"
    address = XMLProperty[str]("@address")
    netmask = XMLProperty[str]("@netmask")
    prefix = XMLProperty[int]("@prefix", kind=int)
    family = XMLProperty[str]("@family")

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        try:
            suffix = self.prefix if self.prefix is not None else (self.netmask or ("64" if self.is_v6 else "24"))
            return ipaddress.ip_interface(f"{self.address}/{suffix}")
        except ValueError:
            return None

    @property
    def is_v6(self) -> bool:
        return self.family == "ipv6" or ":" in (self.address or "")

    @property
    def cidr(self) -> str:
        iface = self.interface
        return str(iface.with_prefixlen) if iface else (self.address or "")

    @property
    def ranges(self) -> list[DHCPRange]:
        return self.children("./dhcp/range", DHCPRange)

    @property
    def hosts(self) -> list[DHCPHost]:
        return self.children("./dhcp/host", DHCPHost)


class Network(XMLObject):
    tag = "network"
    name = XMLProperty[str]("./name")
    uuid = XMLProperty[str]("./uuid")
    forward_mode = XMLProperty[str]("./forward/@mode")
    bridge = XMLProperty[str]("./bridge/@name")
    bridge_stp = XMLProperty[str]("./bridge/@stp")
    bridge_delay = XMLProperty[int]("./bridge/@delay", kind=int)

    @property
    def mode(self) -> str:
        if self.node.find("./forward") is None:
            return "isolated"
        return self.forward_mode or "nat"

    @property
    def ips(self) -> list[IP]:
        return self.children("./ip", IP)

    def dhcp_hosts(self) -> list[tuple[int, DHCPHost]]:
        """Every static host entry with the index of the <ip> it belongs to (libvirt's parentIndex)."""
        return [(index, host) for index, ip in enumerate(self.ips) for host in ip.hosts]


# Building ---------------------------------------------------------------------------------------

@dataclass
class NetworkSpec:
    """What the create form asks for."""

    name: str
    mode: str = "nat"  # nat, route, isolated, bridge
    ipv4: str = ""  # the host's address with prefix, e.g. 10.20.30.1/24
    dhcp_start: str = ""
    dhcp_end: str = ""
    ipv6: str = ""  # e.g. fd00:20::1/64
    bridge: str = ""  # for mode "bridge": an existing host bridge
    hosts: list[dict[str, Any]] = field(default_factory=list)  # static DHCP entries {mac, ip, name}


def _iface(text: str, label: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise VirtError(f"{label} '{text}' is not an address with a prefix, like 10.20.30.1/24.",
                        errors.INVALID) from None
    if "/" not in text:
        raise VirtError(f"{label} '{text}' needs a prefix length, like 10.20.30.1/24.", errors.INVALID)
    return iface


def address_in(text: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network, label: str) -> ipaddress._BaseAddress:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise VirtError(f"{label} '{text}' is not an IP address.", errors.INVALID) from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise VirtError(f"{label} {addr} is not a usable address of {net}.", errors.INVALID)
    return addr


def check_spec(spec: NetworkSpec) -> None:
    """Everything that can be checked without asking the host."""
    if not spec.name.strip():
        raise VirtError("Give the network a name.", errors.INVALID)
    if spec.mode not in MODES:
        raise VirtError(f"'{spec.mode}' is not a network mode webvirt makes. Use one of: {', '.join(MODES)}.",
                        errors.INVALID)
    if spec.mode == "bridge":
        if not spec.bridge.strip():
            raise VirtError("A network on a host bridge needs the bridge's name (for example br0).", errors.INVALID)
        return
    if not spec.ipv4 and not spec.ipv6:
        raise VirtError("Give the network an IPv4 or IPv6 address with a prefix, like 10.20.30.1/24.",
                        errors.INVALID)
    if spec.ipv4:
        iface = _iface(spec.ipv4, "The IPv4 address")
        if iface.version != 4:
            raise VirtError(f"'{spec.ipv4}' is not an IPv4 address.", errors.INVALID)
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise VirtError(f"{iface.ip} is not a usable host address of {iface.network}.", errors.INVALID)
        if bool(spec.dhcp_start) != bool(spec.dhcp_end):
            raise VirtError("Give both the first and the last address of the DHCP range, or neither.",
                            errors.INVALID)
        if spec.dhcp_start:
            start = address_in(spec.dhcp_start, iface.network, "The DHCP range's first address")
            end = address_in(spec.dhcp_end, iface.network, "The DHCP range's last address")
            if start > end:
                raise VirtError(f"The DHCP range starts ({start}) after it ends ({end}).", errors.INVALID)
            if start <= iface.ip <= end:
                raise VirtError(f"The DHCP range {start}-{end} contains the network's own address {iface.ip}.",
                                errors.INVALID)
        for host in spec.hosts:
            address_in(host.get("ip", ""), iface.network, f"The static address for {host.get('mac', '')}")
    elif spec.hosts or spec.dhcp_start:
        raise VirtError("DHCP needs an IPv4 address for the network.", errors.INVALID)
    if spec.ipv6:
        iface6 = _iface(spec.ipv6, "The IPv6 address")
        if iface6.version != 6:
            raise VirtError(f"'{spec.ipv6}' is not an IPv6 address.", errors.INVALID)
    if spec.mode == "route" and not spec.ipv4 and not spec.ipv6:
        raise VirtError("A routed network needs an address.", errors.INVALID)


def network_xml(spec: NetworkSpec) -> str:
    check_spec(spec)
    doc = Network.new(name=spec.name.strip())
    if spec.mode == "bridge":
        return doc.set(forward_mode="bridge", bridge=spec.bridge.strip()).to_string()
    if spec.mode in ("nat", "route"):
        doc.forward_mode = spec.mode
    doc.set(bridge_stp="on", bridge_delay=0)
    if spec.ipv4:
        iface = ipaddress.ip_interface(spec.ipv4.strip())
        ip = doc.add(IP, address=str(iface.ip), prefix=iface.network.prefixlen)
        if spec.dhcp_start:
            ip.add(DHCPRange, "./dhcp", start=spec.dhcp_start.strip(), end=spec.dhcp_end.strip())
        for host in spec.hosts:
            ip.add(DHCPHost, "./dhcp", mac=host.get("mac", "").strip().lower(), ip=host.get("ip", "").strip(),
                   name=host["name"].strip() if host.get("name") else None)
    if spec.ipv6:
        iface6 = ipaddress.ip_interface(spec.ipv6.strip())
        doc.add(IP, family="ipv6", address=str(iface6.ip), prefix=iface6.network.prefixlen)
    return doc.to_string()
