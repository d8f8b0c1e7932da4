"""Virtual networks and host interfaces: shared by the views and the API.

Networks and interfaces are read live from their host (with a timeout) and named by composite ids
(see webvirt.hosts.objects). Only administrators manage them: for anyone else, hosts and therefore
their networks do not exist.
"""

from __future__ import annotations

from operator import attrgetter

from webvirt.accounts import policy
from webvirt.accounts.audit import Target, audited
from webvirt.accounts.policy import Actor
from webvirt.domains.addresses import refresh_host_addresses
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.hosts.objects import act, acting, make_id, read, split_id
from webvirt.virt import errors
from webvirt.virt import interfaces as virt_interfaces
from webvirt.virt import networks as virt_networks
from webvirt.virt.errors import VirtError
from webvirt.virt.interfaces import InterfaceInfo
from webvirt.virt.networks import NetworkInfo
from webvirt.virt.netxml import Network, NetworkSpec, network_xml

SLOW = 30.0  # starting a network launches dnsmasq and sets up a bridge and firewall rules
NAME = attrgetter("name")  # a network's name in the audit trail, once the call returned it


def network_id(host: Host, info: NetworkInfo) -> str:
    return make_id(host, info.uuid)


def _target(target: Target, host: Host, oid: str, name: str) -> None:
    target.set(kind="network", ident=oid, text=f"{name} on {host.name}")


# Reading ----------------------------------------------------------------------------------------

def list_networks(actor: Actor, host: Host) -> list[NetworkInfo]:
    policy.require(actor.user, policy.CHANGE, host)
    return call(host, virt_networks.list_networks)


def get_network(actor: Actor, oid: str) -> tuple[Host, NetworkInfo]:
    return read(actor, oid, virt_networks.get)


def get_xml(actor: Actor, oid: str, inactive: bool = True) -> str:
    return read(actor, oid, lambda conn, uuid: virt_networks.network_xml_of(conn, uuid, inactive))[1]


def leases(actor: Actor, oid: str) -> list[virt_networks.Lease] | None:
    """The network's DHCP leases (None: this host's driver cannot list them); refreshes domains' addresses."""
    host, (uuid,) = split_id(actor.user, oid, 2)
    found = call(host, lambda conn: virt_networks.leases(conn, uuid))
    if found:
        refresh_host_addresses(host)  # the leases just read are the freshest word on domains' addresses
    return found


def dhcp_hosts(actor: Actor, oid: str) -> list[dict]:
    return read(actor, oid, virt_networks.dhcp_hosts)[1]


def domain_ids(host: Host, uuids: list[str]) -> dict[str, int]:
    """Domain UUID -> the cached row's id, to link a lease to its domain's page."""
    return dict(Domain.objects.filter(host=host, uuid__in=uuids).values_list("uuid", "pk"))


# Changing ---------------------------------------------------------------------------------------

def create_network(actor: Actor, host: Host, *, spec: NetworkSpec | None = None, xml: str = "",
                   start: bool = True, autostart: bool = False) -> NetworkInfo:
    """Define a network from the form's fields or from XML and (by default) start it; nothing half-done."""
    with audited(actor, "network.create") as target:
        name = spec.name if spec else _xml_name(xml)
        target.set(kind="network", text=f"{name} on {host.name}")
        policy.require(actor.user, policy.CHANGE, host)
        if spec is not None:
            xml = network_xml(spec)
        if not xml.strip():
            raise VirtError("Fill in the form, or give the network's XML.", errors.INVALID)
        info = call(host, lambda conn: virt_networks.define(conn, xml, start, autostart), SLOW)
        _target(target, host, network_id(host, info), info.name)
        return info


def _xml_name(xml: str) -> str:
    try:
        return Network.from_string(xml).name or ""
    except VirtError:
        return ""


def run_action(actor: Actor, oid: str, action: str, force: bool = False) -> NetworkInfo:
    """Start or stop a network; stopping one that running domains use needs `force`."""
    calls = {"start": lambda conn, uuid: virt_networks.start(conn, uuid),
             "stop": lambda conn, uuid: virt_networks.stop(conn, uuid, force)}
    if action not in calls:
        raise VirtError(f"'{action}' is not a network action. Use start or stop.", errors.INVALID)
    return act(actor, f"network.{action}", "network", oid, calls[action], timeout=SLOW, name_of=NAME,
               detail=["forced"] if force else [])


def set_autostart(actor: Actor, oid: str, enabled: bool) -> NetworkInfo:
    return act(actor, "network.autostart_on" if enabled else "network.autostart_off", "network", oid,
               lambda conn, uuid: virt_networks.set_autostart(conn, uuid, enabled), name_of=NAME)


def delete_network(actor: Actor, oid: str, force: bool = False) -> str:
    return act(actor, "network.delete", "network", oid, lambda conn, uuid: virt_networks.delete(conn, uuid, force),
               timeout=SLOW, name_of=str, detail=["forced"] if force else [])


def update_xml(actor: Actor, oid: str, xml: str) -> tuple[NetworkInfo, list[str]]:
    """Replace a network's definition (libvirt validates it; a rejection changes nothing).

    DHCP host entries are applied to the running network at once; other changes need a restart.
    """
    with acting(actor, "network.edit_xml", "network", oid) as live:
        info, applied = live.call(lambda conn, uuid: virt_networks.redefine(conn, uuid, xml), SLOW)
        live.name(info.name)
        live.target.detail.extend(applied)
        return info, applied


def add_dhcp_host(actor: Actor, oid: str, mac: str, ip: str, name: str = "") -> NetworkInfo:
    return act(actor, "network.dhcp_host_add", "network", oid,
               lambda conn, uuid: virt_networks.add_dhcp_host(conn, uuid, mac, ip, name), name_of=NAME,
               detail=[f"{mac} {ip} {name}".strip()])


def remove_dhcp_host(actor: Actor, oid: str, mac: str) -> NetworkInfo:
    return act(actor, "network.dhcp_host_remove", "network", oid,
               lambda conn, uuid: virt_networks.remove_dhcp_host(conn, uuid, mac), name_of=NAME, detail=[mac])


# Host interfaces --------------------------------------------------------------------------------

def list_interfaces(actor: Actor, host: Host) -> list[InterfaceInfo]:
    policy.require(actor.user, policy.CHANGE, host)
    return call(host, virt_interfaces.list_interfaces)


def interface_xml(actor: Actor, oid: str) -> str:
    return read(actor, oid, virt_interfaces.interface_xml)[1]


def define_bridge(actor: Actor, host: Host, name: str, members: list[str], stp: bool = False,
                  start: bool = False) -> InterfaceInfo:
    with audited(actor, "interface.define") as target:
        target.set(kind="interface", ident=make_id(host, name), text=f"{name} on {host.name}")
        policy.require(actor.user, policy.CHANGE, host)
        return call(host, lambda conn: virt_interfaces.define_bridge(conn, name, members, stp, start), SLOW)


def interface_action(actor: Actor, oid: str, action: str) -> InterfaceInfo | None:
    calls = {"start": virt_interfaces.start, "stop": virt_interfaces.stop, "undefine": virt_interfaces.undefine}
    if action not in calls:
        raise VirtError(f"'{action}' is not an interface action. Use start, stop or undefine.", errors.INVALID)
    return act(actor, f"interface.{action}", "interface", oid, calls[action], timeout=SLOW, named=True)


def update_interface_xml(actor: Actor, oid: str, xml: str) -> InterfaceInfo:
    return act(actor, "interface.edit_xml", "interface", oid,
               lambda conn, name: virt_interfaces.redefine(conn, name, xml), timeout=SLOW)
