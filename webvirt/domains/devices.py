"""Changing a domain's devices: attach and detach disks (from volumes) and network interfaces, change
CD-ROM media. Live where the domain runs and in its persistent definition; administrators only
(owners operate their machines, they do not rebuild them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

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

T = TypeVar("T")
SLOW = 30.0  # a guest may take a while to let go of a device


def require_change(actor: Actor, domain: Domain) -> None:
    """Refuse unless `actor` may change `domain`'s devices (see the module's docstring)."""
    policy.require(actor.user, policy.CHANGE, domain)
    policy.require_admin(actor.user)


def _change(actor: Actor, domain: Domain, action: str, fn: Callable[[libvirt.virConnect], T],
            detail: Callable[[T], str], timeout: float = SLOW) -> T:
    """One audited device change: policy, the libvirt call on the domain's host, what changed."""
    with audited(actor, action, domain) as target:
        require_change(actor, domain)
        result = call(domain.host, fn, timeout)
        target.detail.append(detail(result))
        return result


def attach_volume(actor: Actor, domain: Domain, volume_path: str, bus: str = "virtio",
                  readonly: bool = False) -> str:
    return _change(actor, domain, "domain.attach_disk",
                   lambda conn: virt_devices.attach_volume(conn, domain.uuid, volume_path, bus, readonly),
                   lambda dev: f"{volume_path} as {dev}")


def detach_disk(actor: Actor, domain: Domain, dev: str) -> str:
    return _change(actor, domain, "domain.detach_disk", lambda conn: virt_devices.detach_disk(conn, domain.uuid, dev),
                   lambda source: f"{dev} ({source or 'empty'})")


def attach_interface(actor: Actor, domain: Domain, network: str, model: str = "virtio", mac: str = "") -> str:
    return _change(actor, domain, "domain.attach_interface",
                   lambda conn: virt_devices.attach_interface(conn, domain.uuid, network, model, mac),
                   lambda made: f"{made} on {network}")


def detach_interface(actor: Actor, domain: Domain, mac: str) -> str:
    return _change(actor, domain, "domain.detach_interface",
                   lambda conn: virt_devices.detach_interface(conn, domain.uuid, mac),
                   lambda source: f"{mac} ({source})")


def change_media(actor: Actor, domain: Domain, dev: str, iso_path: str = "") -> None:
    _change(actor, domain, "domain.change_media",
            lambda conn: virt_devices.change_media(conn, domain.uuid, dev, iso_path),
            lambda _none: f"{dev}: {iso_path or 'ejected'}", virt_devices.MEDIA_SECONDS)


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
