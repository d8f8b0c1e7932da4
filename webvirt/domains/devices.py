"""Changing a domain's devices: attach and detach disks (from volumes) and network interfaces, change
CD-ROM media. Live where the domain runs and in its persistent definition; administrators only
(owners operate their machines, they do not rebuild them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libvirt

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.virt import devices as virt_devices
from webvirt.virt import networks as virt_networks
from webvirt.virt import storage as virt_storage
from webvirt.virt.errors import VirtError
from webvirt.virt.storage import VolumeInfo

SLOW = 30.0  # a guest may take a while to let go of a device


def require_change(actor: Actor, domain: Domain) -> None:
    """Refuse unless `actor` may change `domain`'s devices (see the module's docstring)."""
    policy.require(actor.user, policy.CHANGE, domain)
    policy.require_admin(actor.user)


def attach_volume(actor: Actor, domain: Domain, volume_path: str, bus: str = "virtio",
                  readonly: bool = False) -> str:
    with audited(actor, "domain.attach_disk", domain) as target:
        require_change(actor, domain)
        dev = call(domain.host, lambda conn: virt_devices.attach_volume(conn, domain.uuid, volume_path, bus,
                                                                        readonly), SLOW)
        target.detail.append(f"{volume_path} as {dev}")
        return dev


def detach_disk(actor: Actor, domain: Domain, dev: str) -> str:
    with audited(actor, "domain.detach_disk", domain) as target:
        require_change(actor, domain)
        source = call(domain.host, lambda conn: virt_devices.detach_disk(conn, domain.uuid, dev), SLOW)
        target.detail.append(f"{dev} ({source or 'empty'})")
        return source


def attach_interface(actor: Actor, domain: Domain, network: str, model: str = "virtio", mac: str = "") -> str:
    with audited(actor, "domain.attach_interface", domain) as target:
        require_change(actor, domain)
        mac = call(domain.host, lambda conn: virt_devices.attach_interface(conn, domain.uuid, network, model,
                                                                           mac), SLOW)
        target.detail.append(f"{mac} on {network}")
        return mac


def detach_interface(actor: Actor, domain: Domain, mac: str) -> str:
    with audited(actor, "domain.detach_interface", domain) as target:
        require_change(actor, domain)
        source = call(domain.host, lambda conn: virt_devices.detach_interface(conn, domain.uuid, mac), SLOW)
        target.detail.append(f"{mac} ({source})")
        return source


def change_media(actor: Actor, domain: Domain, dev: str, iso_path: str = "") -> None:
    with audited(actor, "domain.change_media", domain) as target:
        require_change(actor, domain)
        call(domain.host, lambda conn: virt_devices.change_media(conn, domain.uuid, dev, iso_path),
             virt_devices.MEDIA_SECONDS)
        target.detail.append(f"{dev}: {iso_path or 'ejected'}")


@dataclass
class Choices:
    """What the Devices forms offer: volumes to attach, ISOs for CD-ROMs, networks; or why not."""

    volumes: list[VolumeInfo] = field(default_factory=list)
    isos: list[VolumeInfo] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    error: VirtError | None = None


def choices(actor: Actor, domain: Domain) -> Choices:
    require_change(actor, domain)

    def read(conn: libvirt.virConnect) -> Choices:
        volumes = virt_storage.all_volumes(conn)
        return Choices(volumes=[v for v in volumes if not v.name.lower().endswith(".iso")],
                       isos=[v for v in volumes if v.name.lower().endswith(".iso")],
                       networks=[n.name for n in virt_networks.list_networks(conn)])

    try:
        return call(domain.host, read, SLOW)
    except VirtError as exc:
        return Choices(error=exc)
