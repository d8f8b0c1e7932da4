"""Users' SSH public keys: checked, fingerprinted and normalised before they are kept; handed to the
cloud-init seeds of their machines by `keys_of`.

A key is parsed by cryptography's `load_ssh_public_key`, which checks the base64, the blob's own type
against the line's, and the key's numbers; webvirt adds what it refuses on top (short RSA keys,
DSA, a private key pasted by mistake, authorized_keys options). Messages never quote key material:
they go into the audit trail when a key is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.models import SshKey
from webvirt.accounts.policy import Actor, Denied
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

# The types webvirt takes, as a key line names them, and how people call them. The security-key
# (FIDO, "-sk") types are parsed by cryptography since 41; their blob carries an application string
# that the parsed key drops, which is why the line kept is the one pasted, not a re-serialised one.
KEY_TYPES = {
    "ssh-ed25519": "Ed25519",
    "ecdsa-sha2-nistp256": "ECDSA P-256",
    "ecdsa-sha2-nistp384": "ECDSA P-384",
    "ecdsa-sha2-nistp521": "ECDSA P-521",
    "ssh-rsa": "RSA",
    "sk-ssh-ed25519@openssh.com": "Ed25519 security key",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA P-256 security key",
}
MIN_RSA_BITS = 2048
MAX_KEYS = 50  # per user: more is a pasting accident more often than a need
MAX_NAME = SshKey._meta.get_field("name").max_length or 100
MAX_TEXT = 16 * 1024  # a 16384-bit RSA key's line is under 3 KB
ACCEPTED = ("ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (2048 bits or more), "
            "sk-ssh-ed25519@openssh.com and sk-ecdsa-sha2-nistp256@openssh.com")
PRIVATE_KEY = "This is a private key. Paste the public key: the .pub file."
MAKE_ONE = "Make an Ed25519 key with: ssh-keygen -t ed25519"
_TYPE_TOKEN = re.compile(r"[A-Za-z0-9@._+-]{1,40}")
_TYPE_INSIDE = re.compile(r"(?:^|[\s,\"])(" + "|".join(re.escape(t) for t in KEY_TYPES) + r")\s+AAAA")


@dataclass(frozen=True)
class PublicKey:
    """A checked key: its normalised line ("type base64 [comment]") and SHA-256 fingerprint."""

    key_type: str
    line: str
    fingerprint: str
    comment: str


def parse(text: str) -> PublicKey:
    """Check that `text` is one SSH public key webvirt accepts (VirtError INVALID, saying why, if not)."""
    text = text.strip()
    if not text:
        raise VirtError("Paste a public key: the line in your .pub file, such as ~/.ssh/id_ed25519.pub.",
                        errors.INVALID)
    _refuse_other_formats(text)
    if len(text.splitlines()) > 1:
        raise VirtError("Paste one key, on one line: this text has several lines.", errors.INVALID)
    fields = text.split(maxsplit=2)
    key_type = fields[0]
    if key_type not in KEY_TYPES:
        raise VirtError(_unknown_type(text, key_type), errors.INVALID)
    if len(fields) < 2:
        raise VirtError(f"The key itself is missing after '{key_type}'. Copy the whole line of the .pub file.",
                        errors.INVALID)
    blob = _checked_blob(key_type, fields[1])
    comment = " ".join(fields[2].split()) if len(fields) > 2 else ""
    if not comment.isprintable():
        raise VirtError("The key's comment (after the key) has control characters. Remove them.", errors.INVALID)
    encoded = base64.b64encode(blob).decode()
    line = f"{key_type} {encoded} {comment}" if comment else f"{key_type} {encoded}"
    return PublicKey(key_type=key_type, line=line, fingerprint=fingerprint(blob), comment=comment)


def fingerprint(blob: bytes) -> str:
    """The fingerprint `ssh-keygen -l` prints for a key blob: SHA256, base64 without padding."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _refuse_other_formats(text: str) -> None:
    """Things people paste instead of an OpenSSH public key line, each with what to do instead."""
    if len(text) > MAX_TEXT:
        raise VirtError(f"This is too long to be an SSH public key (over {MAX_TEXT // 1024} KiB).", errors.INVALID)
    if "PRIVATE KEY" in text or text.startswith("PuTTY-User-Key-File"):
        raise VirtError(PRIVATE_KEY, errors.INVALID)
    if text.startswith("---- BEGIN SSH2 PUBLIC KEY"):
        raise VirtError("This is an SSH2 (RFC 4716) public key. Convert it to OpenSSH's one-line form with "
                        "ssh-keygen -i -f <file> and paste that.", errors.INVALID)
    if text.startswith("-----BEGIN"):
        raise VirtError("This is a PEM file, not an OpenSSH public key. Paste the one-line .pub file "
                        "(ssh-keygen -y -f <private key> prints it).", errors.INVALID)


def _unknown_type(text: str, first: str) -> str:
    """Why a line that does not start with an accepted type is refused."""
    inside = _TYPE_INSIDE.search(text)
    if inside:
        return (f"Remove what comes before '{inside.group(1)}' (authorized_keys options such as from= or "
                "command=): paste the key alone, as in the .pub file.")
    if first in ("ssh-dss", "ssh-dsa"):
        return f"DSA keys are no longer accepted by OpenSSH, nor by webvirt. {MAKE_ONE}."
    if first.startswith("AAAA"):
        return "The key's type is missing: the line starts with its type, such as ssh-ed25519, then the key."
    if "-cert-v01@openssh.com" in first:
        return "This is an SSH certificate. Paste the public key itself: the .pub file without -cert."
    named = f"'{first}'" if _TYPE_TOKEN.fullmatch(first) else "This"
    return f"{named} is not an SSH public key type webvirt accepts. Accepted: {ACCEPTED}. {MAKE_ONE}."


def _checked_blob(key_type: str, encoded: str) -> bytes:
    """The key's bytes, once cryptography has parsed them as a `key_type` key of a size webvirt takes."""
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise VirtError("The key is not valid base64: it was cut or changed when copied. Copy the whole line "
                        "of the .pub file again.", errors.INVALID) from None
    try:
        key = load_ssh_public_key(f"{key_type} {encoded}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise VirtError(f"This is not a valid {KEY_TYPES[key_type]} key: it is cut short or damaged, or its "
                        f"type does not match '{key_type}'. Copy the whole line of the .pub file again.",
                        errors.INVALID) from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise VirtError(f"This RSA key has {key.key_size} bits, too few to be safe: webvirt takes RSA keys of "
                        f"{MIN_RSA_BITS} bits or more. {MAKE_ONE} (or ssh-keygen -t rsa -b 4096).", errors.INVALID)
    return blob


def _checked_name(name: str, key: PublicKey) -> str:
    """The name given, or else the key's comment; refused when empty, too long or unprintable."""
    name = name.strip() or key.comment
    if not name:
        raise VirtError("Give the key a name: the key line has no comment to take one from.", errors.INVALID)
    if len(name) > MAX_NAME:
        raise VirtError(f"A key's name is at most {MAX_NAME} characters; this one has {len(name)}. "
                        "Give a shorter name.", errors.INVALID)
    if not name.isprintable():
        raise VirtError("A key's name cannot contain control characters.", errors.INVALID)
    return name


def _refuse_clashes(user: Any, key: PublicKey, name: str) -> None:
    mine = SshKey.objects.filter(user=user)
    same = mine.filter(fingerprint=key.fingerprint).first()
    if same is not None:
        raise VirtError(f"You already have this key, named {same.name}.", errors.CONFLICT)
    if mine.filter(name=name).exists():
        raise VirtError(f"You already have a key named {name}. Choose another name.", errors.CONFLICT)
    if mine.count() >= MAX_KEYS:
        raise VirtError(f"You have {MAX_KEYS} SSH keys, the most webvirt keeps for one person. Delete one you "
                        "no longer use first.", errors.CONFLICT)


def add_key(actor: Actor, user: Any, text: str, name: str = "") -> SshKey:
    """Check and keep one of `user`'s SSH public keys, in the audit trail (its name and fingerprint only)."""
    with audited(actor, "sshkey.add") as target:
        target.set(kind="sshkey", text=name.strip()[:MAX_NAME])
        key = parse(text)
        name = _checked_name(name, key)
        target.set(kind="sshkey", text=f"{name} ({key.fingerprint})")
        with transaction.atomic():
            # The user's row locked: two adds at once cannot both pass the count and clash checks (PostgreSQL).
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            _refuse_clashes(user, key, name)
            row = SshKey.objects.create(user=user, name=name, public_key=key.line, fingerprint=key.fingerprint)
        target.set(row)
        target.detail.append(f"{key.key_type} {key.fingerprint} for {user.get_username()}")
    return row


def delete_key(actor: Actor, key: SshKey) -> None:
    """Forget one of the actor's own keys, in the audit trail; anyone else's does not exist for them."""
    with audited(actor, "sshkey.delete", key) as target:
        if not own_keys(actor.user).filter(pk=key.pk).exists():
            raise Denied("Not found.", hidden=True)
        target.detail.append(f"{key.key_type} {key.fingerprint} of {key.user.get_username()}")
        key.delete()


def own_keys(user: object) -> QuerySet[SshKey]:
    """The keys `user` manages: their own, administrators' too (nobody manages another's keys)."""
    return policy.own(user, SshKey.objects.all())


def keys_of(user: Any) -> list[str]:
    """The public key lines of `user` (a User or a user id), for authorized_keys: by name, then age."""
    return list(SshKey.objects.filter(user=user).order_by("name", "id").values_list("public_key", flat=True))


def describe(key_type: str) -> str:
    """A key type as people call it ("Ed25519", "RSA"...)."""
    return KEY_TYPES.get(key_type, key_type)
