"""A domain's IP addresses: from DHCP leases, the guest agent or the host's ARP table, each marked with its source.

No traffic is ever sent to a guest: leases and ARP entries are what the host already knows, and the
guest agent answers over its virtio channel.
"""

from __future__ import annotations

from typing import Any

import libvirt

from webvirt.virt import domains as virt_domains
from webvirt.virt.domainxml import Domain as DomainXML

LEASE, AGENT, ARP = "lease", "agent", "arp"
_FAMILIES = {libvirt.VIR_IP_ADDR_TYPE_IPV4: "ipv4", libvirt.VIR_IP_ADDR_TYPE_IPV6: "ipv6"}
_QUIET = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
          libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, libvirt.VIR_ERR_INVALID_ARG,
          libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_OPERATION_TIMEOUT,
          libvirt.VIR_ERR_INTERNAL_ERROR)


def _add(found: dict[str, dict[str, Any]], mac: str, ip: str, prefix: int, family: str, source: str) -> None:
    if not ip or ip.startswith(("127.", "::1", "fe80:")):
        return
    entry = found.setdefault(ip, {"ip": ip, "prefix": prefix, "family": family, "mac": (mac or "").lower(),
                                  "sources": []})
    if source not in entry["sources"]:
        entry["sources"].append(source)


def from_leases(conn: libvirt.virConnect, doc: DomainXML, found: dict[str, dict[str, Any]]) -> None:
    for iface in doc.interfaces:
        if iface.type != "network" or not iface.source_network or not iface.mac:
            continue
        try:
            net = conn.networkLookupByName(iface.source_network)
            if not net.isActive():
                continue
            leases = net.DHCPLeases(iface.mac)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _QUIET:
                continue
            raise
        for lease in leases:
            family = "ipv6" if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4"
            _add(found, iface.mac, lease.get("ipaddr", ""), lease.get("prefix", 0), family, LEASE)


def _from_domain(dom: libvirt.virDomain, source: int, label: str, found: dict[str, dict[str, Any]]) -> None:
    try:
        answer = dom.interfaceAddresses(source, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _QUIET:
            return
        raise
    for _name, entry in (answer or {}).items():
        for addr in entry.get("addrs") or []:
            _add(found, entry.get("hwaddr") or "", addr.get("addr", ""), addr.get("prefix", 0),
                 _FAMILIES.get(addr.get("type"), "ipv4"), label)


def has_agent(doc: DomainXML) -> bool:
    return any(node.get("name") == "org.qemu.guest_agent.0" for node in doc.node.findall("./devices/channel/target"))


def domain_addresses(conn: libvirt.virConnect, uuid: str) -> list[dict[str, Any]]:
    """Every address the host knows for the domain: [{ip, prefix, family, mac, sources: [lease|agent|arp]}]."""
    dom = virt_domains.lookup(conn, uuid)
    doc = DomainXML.from_string(dom.XMLDesc(0))
    found: dict[str, dict[str, Any]] = {}
    from_leases(conn, doc, found)
    if dom.isActive():
        if has_agent(doc):
            _from_domain(dom, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, AGENT, found)
        _from_domain(dom, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP, ARP, found)
    return sorted(found.values(), key=lambda e: (e["family"], e["ip"]))


def lease_addresses(conn: libvirt.virConnect) -> dict[str, list[dict[str, Any]]]:
    """Domain UUID -> its addresses from every active network's leases, in one pass over the host.

    Cheap enough to run for a whole host: one call per network plus one XML read per domain.
    """
    by_mac: dict[str, list[dict[str, Any]]] = {}
    for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        try:
            leases = net.DHCPLeases()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _QUIET:
                continue
            raise
        for lease in leases:
            by_mac.setdefault((lease.get("mac") or "").lower(), []).append(lease)
    result: dict[str, list[dict[str, Any]]] = {}
    for dom in conn.listAllDomains(0):
        try:
            doc = DomainXML.from_string(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        found: dict[str, dict[str, Any]] = {}
        for iface in doc.interfaces:
            for lease in by_mac.get((iface.mac or "").lower(), []):
                family = "ipv6" if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4"
                _add(found, iface.mac, lease.get("ipaddr", ""), lease.get("prefix", 0), family, LEASE)
        result[dom.UUIDString()] = sorted(found.values(), key=lambda e: (e["family"], e["ip"]))
    return result
