"""cloud-init seeds of a template's clones: the template's settings, and the seed of one clone.

Every clone of a template with `cloud_init` gets a NoCloud seed (webvirt.virt.seed builds the ISO and
attaches it): `instance-id` is the clone's UUID and `local-hostname` its name, so no two clones look like
the same machine to cloud-init (same machine-id, same DHCP lease, same host keys); the user-data is the
template's cloud-config with the owner's SSH keys and, where the template allows it, the hash of a
password the owner chose. A warm machine is made before it has an owner: its seed has no owner data, and
the owner's keys are added through the QEMU guest agent when it is handed out (`give_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from webvirt.accounts.sshkeys import keys_of
from webvirt.catalog.models import Template
from webvirt.virt import agent as virt_agent
from webvirt.virt import errors
from webvirt.virt import seed as virt_seed
from webvirt.virt.errors import VirtError

LOGIN_USER_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class CloudInitData:
    """A template's cloud-init settings, as a form or the API gives them."""

    enabled: bool = False
    user_data: str = ""
    network_config: str = ""
    allow_password: bool = False
    login_user: str = ""
    guest_agent: bool = False
    detach_seed: bool = False

    @classmethod
    def of(cls, template: Template) -> CloudInitData:
        return cls(enabled=template.cloud_init, user_data=template.user_data,
                   network_config=template.network_config, allow_password=template.allow_password,
                   login_user=template.login_user, guest_agent=template.guest_agent,
                   detach_seed=template.detach_seed)


def check(data: CloudInitData, warm_count: int) -> None:
    """Refuse settings a clone could not boot with, before anything is saved."""
    virt_seed.check_cloud_config(data.user_data)
    virt_seed.check_network_config(data.network_config)
    user = data.login_user.strip()
    if user and (not set(user) <= LOGIN_USER_CHARS or user[0] in "-0123456789"):
        raise VirtError(f"'{errors.quote(user)}' is not a user name a Linux guest accepts: use lower-case "
                        "letters, digits, '_' and '-', starting with a letter.", errors.INVALID)
    if data.allow_password and not user:
        raise VirtError("Name the login user: a password is set for a named user.", errors.INVALID)
    if data.guest_agent and not user:
        raise VirtError("Name the login user: the guest agent adds keys to a named user.", errors.INVALID)
    if data.enabled and warm_count > 0 and not data.guest_agent:
        raise VirtError("This template keeps warm machines, which are booted before anyone asks for them: their "
                        "seeds cannot hold their owners' SSH keys. Tick 'has the QEMU guest agent' (webvirt then "
                        "adds the keys when a machine is handed out), or keep no warm machines.", errors.CONFLICT)


def apply(template: Template, data: CloudInitData) -> None:
    """Copy checked settings onto the template (the caller saves it)."""
    check(data, template.warm_count)
    template.cloud_init = data.enabled
    template.user_data, template.network_config = data.user_data.strip(), data.network_config.strip()
    template.allow_password, template.login_user = data.allow_password, data.login_user.strip()
    template.guest_agent, template.detach_seed = data.guest_agent, data.detach_seed


def check_password(template: Template, password: str) -> str:
    """The hash of a clone request's password: refused where the template does not take one."""
    if not password:
        return ""
    if not (template.cloud_init and template.allow_password):
        raise VirtError(f"Clones of {template.name} take no password: its administrator has not allowed one. "
                        "Sign in with your SSH key instead.", errors.INVALID)
    return virt_seed.hash_password(password)


def seed_of(template: Template, name: str, uuid: str, owner_id: int | None, password_hash: str = "") -> bytes:
    """The seed ISO of one clone: nothing of the owner's when it has none yet (a warm machine)."""
    keys = keys_of(owner_id) if owner_id is not None else []
    user_data = virt_seed.user_data(template.user_data, keys, password_hash, template.login_user)
    return virt_seed.seed_iso(virt_seed.Seed(instance_id=uuid, hostname=name, user_data=user_data,
                                             network_config=template.network_config))


def give_keys(conn: libvirt.virConnect, template: Template, uuid: str, owner_id: int | None) -> int:
    """Add the owner's SSH keys to a running warm machine through its guest agent; how many there were."""
    keys = keys_of(owner_id) if owner_id is not None else []
    virt_agent.add_ssh_keys(conn, uuid, template.login_user, keys)
    return len(keys)
