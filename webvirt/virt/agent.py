"""Calls into a running guest through the QEMU guest agent (qemu-guest-agent in the guest)."""

from __future__ import annotations

import libvirt

from webvirt.virt import errors
from webvirt.virt.domains import lookup
from webvirt.virt.errors import VirtError


def add_ssh_keys(conn: libvirt.virConnect, uuid: str, user: str, keys: list[str]) -> None:
    """Append `keys` to `user`'s authorized_keys in the guest (keys it has already are not repeated)."""
    if not keys:
        return
    dom = lookup(conn, uuid)
    try:
        dom.authorizedSSHKeysSet(user, keys, libvirt.VIR_DOMAIN_AUTHORIZED_SSH_KEYS_SET_APPEND)
    except libvirt.libvirtError as exc:
        raise VirtError(f"The guest agent of {dom.name()} did not take the SSH keys: {exc.get_error_message()}",
                        errors.UNREACHABLE) from exc
