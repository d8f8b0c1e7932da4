"""cloud-init NoCloud seeds: a small ISO labelled `cidata` that gives each clone its own identity.

A seed holds `meta-data` (instance-id, local-hostname), `user-data` (the administrator's cloud-config
with the user's SSH keys and password hash merged in) and, when given, `network-config`. cloud-init
in the guest finds the disk by its label, and runs its first-boot work again whenever the instance-id
is new, which is what makes a linked clone of a template a machine of its own.

The seed is a raw volume in a pool, attached as a read-only CD-ROM. The domain's <metadata> names it
(SEED_NS), because CD-ROM images are otherwise shared (installation ISOs) and never deleted with a
domain: only a path recorded there is ours to delete.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import libvirt
import pycdlib
import yaml
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.domainxml import Disk
from webvirt.virt.domainxml import Domain as DomainXML
from webvirt.virt.errors import VirtError
from webvirt.virt.xmlobj import detach as detach_node

with warnings.catch_warnings():
    # passlib uses the standard library's crypt module (glibc's crypt, 20 times faster than its own
    # code) when it is there; Python 3.11 warns that the module goes away in 3.13, where passlib
    # falls back to its own implementation by itself.
    warnings.simplefilter("ignore", DeprecationWarning)
    from passlib.hash import sha512_crypt

SEED_NS = "https://webvirt.dev/xmlns/seed/1"
VOLUME_LABEL = "cidata"
# NoCloud itself has no limit, but a cloud-config is a page or two; EC2 stops user-data at 16 KiB.
MAX_CONFIG_BYTES = 64 * 1024
MIN_PASSWORD = 8
# SHA-512 crypt with 100,000 rounds: about 60 ms to make or check here, 20 times glibc's default of
# 5,000 (which chpasswd -e and every PAM since 2007 accept as well), so a leaked seed is slow to crack.
PASSWORD_ROUNDS = 100_000
# Long scalars (SSH keys) stay on one line instead of being folded at 80 columns.
_YAML_WIDTH = 1 << 20
IDE_TARGETS = ("hdc", "hdd", "hda", "hdb")  # hdc first, as installation CD-ROMs (webvirt/install/jobs.py)


@dataclass
class Seed:
    """What one seed ISO holds; `user_data` is the whole text, `#cloud-config` line included."""

    instance_id: str
    hostname: str
    user_data: str
    network_config: str = ""


# Checking what administrators write ---------------------------------------------------------------

def _load_mapping(text: str, what: str) -> dict[str, Any]:
    """`text` parsed as YAML that must be a mapping at the top (or empty); `what` names it in errors.

    A `#cloud-config` first line is a YAML comment, so it needs no special case.
    """
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise VirtError(f"The {what} is longer than {MAX_CONFIG_BYTES // 1024} KiB.", errors.INVALID)
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = (exc.problem or exc.context or "it cannot be read").rstrip(".")
        raise VirtError(f"The {what} is not valid YAML: {where}{problem}.", errors.INVALID) from None
    except yaml.YAMLError as exc:
        raise VirtError(f"The {what} is not valid YAML: {exc}.", errors.INVALID) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VirtError(f"The {what} must be a mapping of keys to values at the top (such as 'packages: [...]'), "
                        f"not {_yaml_kind(data)}.", errors.INVALID)
    return data


def _yaml_kind(data: object) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "plain text"
    return "a single value"


def check_cloud_config(text: str) -> dict[str, Any]:
    """The administrator's cloud-config as a dict ({} when empty), or a VirtError saying what is wrong."""
    return _load_mapping(text, "user-data")


def check_network_config(text: str) -> dict[str, Any]:
    """A network-config (version 1 or 2) as a dict ({} when empty), or a VirtError saying what is wrong."""
    return _load_mapping(text, "network-config")


def hash_password(plain: str) -> str:
    """A SHA-512 crypt hash (`$6$rounds=...`) of `plain`, which is refused when too short or blank."""
    if not plain.strip():
        raise VirtError("The password is empty.", errors.INVALID)
    if len(plain) < MIN_PASSWORD:
        raise VirtError(f"The password is too short: use at least {MIN_PASSWORD} characters.", errors.INVALID)
    hasher: Any = sha512_crypt  # its stubs leave `using` untyped, which mypy --strict refuses to call
    return str(hasher.using(rounds=PASSWORD_ROUNDS).hash(plain))


# user-data ------------------------------------------------------------------------------------------

def user_data(cloud_config: str, ssh_keys: list[str], password_hash: str = "", login_user: str = "") -> str:
    """The seed's user-data: `#cloud-config` and the administrator's config with keys and password merged in.

    Merge rules:
    - SSH keys: when `login_user` names an entry of the config's `users` list, they extend that
      entry's `ssh_authorized_keys`; otherwise they extend the top-level `ssh_authorized_keys`, which
      cloud-init gives to the image's default user (debian, ubuntu, ...; a config whose `users` list
      leaves out `default` has none, and then cloud-init gives them to root alone, where disable_root
      refuses them). A key already there is not added again, and blank lines are skipped.
    - Password, only ever as a crypt hash: a `chpasswd.users` entry `{name: login_user, password: hash,
      type: hash}` (cloud-init 22.3 and later) replaces any entry of the config for the same user;
      `chpasswd.expire` is set to false unless the config sets it, and `ssh_pwauth` to true unless the
      config sets it (an administrator who turned password logins over SSH off keeps it off; the
      password still works on the console). A password needs `login_user`.
    - Nothing else of the administrator's config changes. The keys keep their order (the output is
      the same for the same input), though comments and the YAML's own layout are not kept.
    """
    config = check_cloud_config(cloud_config)
    keys = [key.strip() for key in ssh_keys if key.strip()]
    if keys:
        _add_keys(_key_holder(config, login_user), keys)
    if password_hash:
        _set_password(config, password_hash, login_user)
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True, width=_YAML_WIDTH)
    return "#cloud-config\n" + body


def _key_holder(config: dict[str, Any], login_user: str) -> dict[str, Any]:
    """The mapping whose `ssh_authorized_keys` the keys go to: login_user's `users` entry, or the top."""
    users = config.get("users")
    if login_user and isinstance(users, list):
        for entry in users:
            if isinstance(entry, dict) and entry.get("name") == login_user:
                return entry
    return config


def _add_keys(holder: dict[str, Any], keys: list[str]) -> None:
    existing = holder.get("ssh_authorized_keys")
    if existing is None:
        existing = []
    elif isinstance(existing, str):
        existing = [existing]  # cloud-init takes a single key as a string too
    elif not isinstance(existing, list):
        raise VirtError("ssh_authorized_keys in the user-data must be a list of keys.", errors.INVALID)
    holder["ssh_authorized_keys"] = existing + [key for i, key in enumerate(keys)
                                                if key not in existing and key not in keys[:i]]


def _set_password(config: dict[str, Any], password_hash: str, login_user: str) -> None:
    if not login_user:
        raise VirtError("Name the user the password is for.", errors.INVALID)
    if not password_hash.startswith("$") or any(c.isspace() for c in password_hash):
        # Only hashes reach the seed: a password in clear would be readable in the guest and on the host.
        raise VirtError("The password must be given as a crypt hash ($6$...), never in clear.", errors.INVALID)
    chpasswd = config.setdefault("chpasswd", {})
    if not isinstance(chpasswd, dict):
        raise VirtError("chpasswd in the user-data must be a mapping.", errors.INVALID)
    chpasswd.setdefault("expire", False)
    users = chpasswd.get("users") or []
    if not isinstance(users, list):
        raise VirtError("chpasswd.users in the user-data must be a list.", errors.INVALID)
    kept = [entry for entry in users if not (isinstance(entry, dict) and entry.get("name") == login_user)]
    chpasswd["users"] = [*kept, {"name": login_user, "password": password_hash, "type": "hash"}]
    config.setdefault("ssh_pwauth", True)


# The ISO ----------------------------------------------------------------------------------------------

def meta_data(seed: Seed) -> str:
    """`instance-id` and `local-hostname`, quoted by the YAML dumper wherever a value needs it."""
    if not seed.instance_id.strip() or not seed.hostname.strip():
        raise VirtError("A cloud-init seed needs an instance-id and a hostname.", errors.INVALID)
    return yaml.safe_dump({"instance-id": seed.instance_id, "local-hostname": seed.hostname},
                          sort_keys=False, default_flow_style=False, width=_YAML_WIDTH)


def seed_iso(seed: Seed) -> bytes:
    """The seed as an ISO 9660 image labelled `cidata` (about 66 KiB, made in about 3 ms).

    ISO 9660 names cannot hold '-', so each file also gets its real name in the Rock Ridge (what
    Linux reads) and Joliet (what Windows and cloudbase-init read) directories; the plain ISO 9660
    name (level 3: long names, d-characters) is META_DATA and so on.
    """
    files = [("meta-data", meta_data(seed)), ("user-data", seed.user_data)]
    if seed.network_config:
        files.append(("network-config", seed.network_config))
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)
    try:
        for name, text in files:
            data = text.encode()
            iso.add_fp(io.BytesIO(data), len(data), f"/{name.upper().replace('-', '_')}.;1",
                       rr_name=name, joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    return out.getvalue()


# Storage ------------------------------------------------------------------------------------------------

def seed_volume_name(domain_name: str) -> str:
    return f"{domain_name}-cidata.iso"


def upload_seed(conn: libvirt.virConnect, pool_name: str, vol_name: str, data: bytes) -> str:
    """A new raw volume `vol_name` of exactly len(data) bytes in the pool, filled with `data`; its path.

    A volume of that name already there is refused (it could be another domain's). When the upload
    fails, the half-written volume is deleted.
    """
    # install imports clone, which imports this module for make_template: imported here, not above.
    from webvirt.virt.install import create_upload_volume, upload

    pool = conn.storagePoolLookupByName(pool_name)
    errors.refuse_taken(lambda: pool.storageVolLookupByName(vol_name),
                        f"Pool {pool_name} already has a volume named '{vol_name}'.")
    vol = create_upload_volume(conn, pool_name, vol_name, len(data))
    try:
        return upload(conn, vol, io.BytesIO(data), len(data), lambda _sent: None)
    except BaseException:
        try:
            vol.delete(0)
        except libvirt.libvirtError:
            pass
        raise


# Domain XML -------------------------------------------------------------------------------------------

def attach(domain_xml: str, seed_path: str) -> str:
    """`domain_xml` with the seed at `seed_path` as a read-only CD-ROM, recorded in its <metadata>.

    The bus is SATA on a q35 machine (which has no IDE) and IDE otherwise; the target is the first
    free one (hdc first on IDE, like installation CD-ROMs). A domain has at most one seed.
    """
    doc = DomainXML.from_string(domain_xml)
    if seed_paths(domain_xml):
        raise VirtError(f"{doc.name or 'The domain'} already has a cloud-init seed; detach it first.",
                        errors.CONFLICT)
    bus = "sata" if "q35" in (doc.machine or "") else "ide"
    doc.add_device(Disk, type="file", device="cdrom", driver_name="qemu", driver_type="raw", source_file=seed_path,
                   target_dev=_free_target(doc, bus), target_bus=bus, readonly=True)
    etree.SubElement(doc.element("./metadata"), f"{{{SEED_NS}}}seed", nsmap={"webvirt": SEED_NS}, path=seed_path)
    return doc.to_string()


def _free_target(doc: DomainXML, bus: str) -> str:
    taken = {disk.target_dev for disk in doc.disks}
    candidates = IDE_TARGETS if bus == "ide" else tuple(f"sd{letter}" for letter in "abcdefghijklmnopqrstuvwxyz")
    for target in candidates:
        if target not in taken:
            return target
    raise VirtError(f"{doc.name or 'The domain'} has no free {bus.upper()} slot for the cloud-init seed's CD-ROM; "
                    "remove a CD-ROM or disk on that bus first.", errors.CONFLICT)


def seed_paths(domain_xml: str) -> list[str]:
    """The seed volumes the domain's <metadata> records as its own (none, or one)."""
    root = DomainXML.from_string(domain_xml).node
    return [path for node in root.findall(f"./metadata/{{{SEED_NS}}}seed") if (path := node.get("path"))]


def drop(domain_xml: str) -> str:
    """`domain_xml` without its seed: the CD-ROMs that hold a recorded seed, and the records.

    XML without a seed comes back as it was given, not rewritten.
    """
    paths = set(seed_paths(domain_xml))
    if not paths:
        return domain_xml
    doc = DomainXML.from_string(domain_xml)
    for disk in doc.disks:
        if disk.device == "cdrom" and disk.source_file in paths:
            detach_node(disk.node)
    doc.remove(f"./metadata/{{{SEED_NS}}}seed")
    meta = doc.node.find("./metadata")
    if meta is not None and len(meta) == 0:
        detach_node(meta)
    return doc.to_string()


def detach(conn: libvirt.virConnect, uuid: str) -> str | None:
    """Take the seed off the domain's definition and delete its volume; its path, or None if it had none.

    Only the persistent definition changes: a running machine keeps its CD-ROM until it powers off.
    Deleting the volume under it is safe on a file pool: the file is unlinked, but QEMU holds it
    open, so the guest reads the same bytes until QEMU closes it (at power-off), and only then is the
    space freed. (A block-based pool would refuse to remove a logical volume in use; seeds go to file
    pools.)
    """
    # domains imports this module for _disk_volumes: imported here, not above.
    from webvirt.virt.domains import lookup

    dom = lookup(conn, uuid)
    if not dom.isPersistent():
        raise VirtError(f"{dom.name()} is transient; its cloud-init seed goes when it stops.", errors.STATE)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    paths = seed_paths(xml)
    if not paths:
        return None
    conn.defineXMLFlags(drop(xml), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    for path in paths:
        try:
            conn.storageVolLookupByPath(path).delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
    return paths[0]
