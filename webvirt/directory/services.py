"""LDAP settings: checking and saving them (administrators only, audited), and how a connection to the
directory is opened (timeouts, TLS, the CA certificate), shared by the sign-in backend and the
connection test (probe.py).

The bind password is only ever sent to the server it was saved for: changing the server address
asks for it again, so that nobody can point the settings at a server of their own and collect it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import time
from contextlib import suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_auth_ldap.config import (  # type: ignore[import-untyped]
    GroupOfNamesType,
    LDAPGroupType,
    LDAPSearch,
    PosixGroupType,
)

from webvirt.accounts import groupsync, policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.directory.models import SINGLETON, LdapSettings
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
MAX_TIMEOUT = 30
GROUP_FILTERS = {LdapSettings.GROUP_OF_NAMES: "(objectClass=groupOfNames)",
                 LdapSettings.POSIX_GROUP: "(objectClass=posixGroup)"}


@dataclass
class LdapData:
    """What an administrator may set (the form). A blank password keeps the stored one."""

    enabled: bool = False
    server_uri: str = ""
    start_tls: bool = False
    ca_certificate: str = ""
    timeout: int = 5
    bind_dn: str = ""
    bind_password: str = ""
    clear_password: bool = False
    user_search_base: str = ""
    user_filter: str = "(uid=%(user)s)"
    first_name_attribute: str = "givenName"
    last_name_attribute: str = "sn"
    email_attribute: str = "mail"
    group_search_base: str = ""
    group_type: str = LdapSettings.GROUP_OF_NAMES
    group_mapping: str = ""
    admin_groups: str = ""


# The checks, one per field (the form shows each next to its field) ---------------------------------

def _invalid(sentence: str) -> VirtError:
    return VirtError(sentence, errors.INVALID)


def check_uri(text: str) -> str:
    """One ldap:// or ldaps:// address with a host name or IP address and an optional port."""
    text = text.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _invalid(f"'{errors.quote(text)}' is not an LDAP address: give one like ldap://ldap.example.org "
                       "or ldaps://ldap.example.org:636.") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query \
            or parts.fragment or parts.username or " " in text or port == 0:
        raise _invalid(f"'{errors.quote(text)}' is not an LDAP address: give one like ldap://ldap.example.org "
                       "or ldaps://ldap.example.org:636.")
    return f"{parts.scheme}://{parts.netloc}"


def check_dn(text: str, what: str) -> str:
    text = text.strip()
    if text and not ldap.dn.is_dn(text):
        raise _invalid(f"'{errors.quote(text)}' is not a valid {what}: write it like ou=people,dc=example,dc=org.")
    return text


def check_filter(text: str) -> str:
    """An LDAP filter with %(user)s where the typed user name goes, such as (uid=%(user)s)."""
    text = text.strip()
    if "%(user)s" not in text:
        raise _invalid("The user filter must contain %(user)s where the user name goes, e.g. (uid=%(user)s).")
    try:
        expanded = text % {"user": "x"}
    except (KeyError, ValueError, TypeError):
        raise _invalid("The user filter may contain no % other than %(user)s (write a literal % as %%).") from None
    depth = 0
    for char in expanded:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if not (expanded.startswith("(") and expanded.endswith(")")) or depth != 0:
        raise _invalid("The user filter is not an LDAP filter: it starts with ( and ends with ), "
                       "with its parentheses balanced, e.g. (&(objectClass=person)(uid=%(user)s)).")
    return text


def check_ca(pem: str) -> str:
    """PEM certificates (a CA, or a bundle); nothing else, and never a private key."""
    pem = pem.strip()
    if not pem:
        return ""
    if "PRIVATE KEY" in pem:
        raise _invalid("That is a private key. Paste the certificate of the CA that signed the directory's "
                       "certificate (-----BEGIN CERTIFICATE-----); the key stays on the server.")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise _invalid("The CA certificate is not a PEM certificate: paste the text from "
                       "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----.") from None
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def check_attribute(text: str) -> str:
    text = text.strip()
    if text and not all(c.isalnum() or c in "-;" for c in text):
        raise _invalid(f"'{errors.quote(text)}' is not an LDAP attribute name.")
    return text


def check_timeout(value: int) -> int:
    if not 1 <= value <= MAX_TIMEOUT:
        raise _invalid(f"The timeout is between 1 and {MAX_TIMEOUT} seconds.")
    return value


def check_together(data: LdapData) -> None:
    """What the fields mean only together."""
    if data.start_tls and data.server_uri.startswith("ldaps://"):
        raise _invalid("StartTLS is for ldap:// addresses; an ldaps:// address is encrypted from the start. "
                       "Turn one of them off.")
    if data.enabled and not (data.server_uri and data.user_search_base):
        raise _invalid("To turn LDAP sign-in on, give at least the server address and the user search base.")
    if (data.group_mapping.strip() or data.admin_groups.strip()) and not data.group_search_base.strip():
        raise _invalid("The group mapping needs a group search base: where webvirt looks up a user's groups.")
    groupsync.parse(data.group_mapping, data.admin_groups)


def clean(data: LdapData) -> LdapData:
    """`data` with every field checked and tidied; VirtError naming the first mistake."""
    checked = LdapData(**{f.name: getattr(data, f.name) for f in fields(LdapData)})
    checked.server_uri = check_uri(data.server_uri)
    checked.ca_certificate = check_ca(data.ca_certificate)
    checked.timeout = check_timeout(data.timeout)
    checked.bind_dn = check_dn(data.bind_dn, "bind DN")
    checked.user_search_base = check_dn(data.user_search_base, "user search base")
    checked.user_filter = check_filter(data.user_filter)
    checked.group_search_base = check_dn(data.group_search_base, "group search base")
    for name in ("first_name_attribute", "last_name_attribute", "email_attribute"):
        setattr(checked, name, check_attribute(getattr(data, name)))
    if checked.group_type not in GROUP_FILTERS:
        raise _invalid("Choose groupOfNames or posixGroup as the group type.")
    check_together(checked)
    return checked


# Saving -------------------------------------------------------------------------------------------

def _require_password_again(row: LdapSettings, data: LdapData) -> None:
    """A stored bind password was given for one server; a new address must not receive it unasked."""
    moved = row.server_uri and data.server_uri != row.server_uri
    if moved and row.has_password and not data.bind_password and not data.clear_password:
        raise _invalid("Enter the bind password again when you change the server address: the stored one is not "
                       "sent to a new address.")


def _apply(row: LdapSettings, data: LdapData) -> None:
    for f in fields(LdapData):
        if f.name not in ("bind_password", "clear_password"):
            setattr(row, f.name, getattr(data, f.name))
    if data.clear_password:
        row.bind_password_encrypted = ""
    if data.bind_password:
        row.set_password(data.bind_password)


def _changes(before: dict[str, Any], row: LdapSettings, data: LdapData) -> str:
    """What changed, for the audit trail: field names and new values, never the password itself."""
    said = []
    for f in fields(LdapData):
        if f.name in ("bind_password", "clear_password") or before[f.name] == getattr(row, f.name):
            continue
        value = getattr(row, f.name)
        shown = "changed" if f.name in ("ca_certificate", "group_mapping", "admin_groups") else repr(value)
        said.append(f"{f.name}: {shown}")
    if data.clear_password:
        said.append("bind password: removed")
    elif data.bind_password:
        said.append("bind password: set")
    return "; ".join(said) or "nothing changed"


def save_settings(actor: Actor, data: LdapData) -> LdapSettings:
    with audited(actor, "ldap.update") as target, transaction.atomic():
        target.set(kind="ldapsettings", ident=1, text="LDAP settings")
        policy.require_admin(actor.user)
        row = LdapSettings.load()
        data = clean(data)
        _require_password_again(row, data)
        before = {f.name: getattr(row, f.name) for f in fields(LdapData) if hasattr(row, f.name)}
        _apply(row, data)
        row.last_problem, row.last_problem_at = "", None  # the new settings have had no problem yet
        row.save()
        target.detail.append(_changes(before, row, data))
    return row


def trial_settings(data: LdapData) -> LdapSettings:
    """The settings as typed, unsaved, for a connection test: the stored password when none is typed,
    but only for the address it was saved for."""
    row = LdapSettings.load()
    data = clean(data)
    keep = row.has_password and not data.clear_password and data.server_uri == row.server_uri
    stored = row.bind_password_encrypted if keep else ""
    trial = LdapSettings(pk=None)
    _apply(trial, data)
    if not data.bind_password:
        trial.bind_password_encrypted = stored
    return trial


# Problems seen while signing people in --------------------------------------------------------------

def record_problem(sentence: str) -> None:
    """Log a server problem and keep it on the settings page (the newest only), without a traceback."""
    log.warning("LDAP sign-in: %s", sentence)
    LdapSettings.objects.filter(pk=SINGLETON).update(last_problem=sentence[:500], last_problem_at=timezone.now())


def clear_problem(row: LdapSettings) -> None:
    if row.last_problem:
        LdapSettings.objects.filter(pk=row.pk).update(last_problem="", last_problem_at=None)


# Connections --------------------------------------------------------------------------------------

def host_and_port(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    return parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 389)


def ca_file(pem: str) -> str:
    """The CA certificate as a file libldap can read (it takes no PEM text): named by its content, so a
    changed certificate is a new file and connections being opened keep the one they were given."""
    folder = Path(settings.STATE_DIR) / "ldap"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"ca-{hashlib.sha256(pem.encode()).hexdigest()[:24]}.pem"
    if not path.exists():
        spare = path.with_name(f".{path.name}.{os.getpid()}")
        spare.write_text(pem)
        spare.replace(path)
        _forget_old_ca_files(folder, keep=path)
    return str(path)


def _forget_old_ca_files(folder: Path, keep: Path) -> None:
    """Certificates replaced over an hour ago: no connection is still being opened with them."""
    old = time.time() - 3600
    for other in folder.glob("ca-*.pem"):
        with suppress(OSError):
            if other != keep and other.stat().st_mtime < old:
                other.unlink()


def connection_options(row: LdapSettings, verify: bool = True) -> dict[int, Any]:
    """python-ldap options for one connection; libldap applies the TLS ones when OPT_X_TLS_NEWCTX (last)
    builds the connection's own TLS context, so one directory's CA never leaks into another connection."""
    options: dict[int, Any] = {
        ldap.OPT_PROTOCOL_VERSION: ldap.VERSION3,
        ldap.OPT_REFERRALS: 0,  # never follow a referral to another server with our credentials
        ldap.OPT_NETWORK_TIMEOUT: float(row.timeout),  # connecting
        ldap.OPT_TIMEOUT: float(row.timeout),  # each answer
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND if verify else ldap.OPT_X_TLS_NEVER,
    }
    if row.ca_certificate:
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file(row.ca_certificate)
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options


def open_connection(row: LdapSettings, verify: bool = True) -> Any:
    """An LDAPObject with the settings' options, StartTLS done when asked; not bound yet."""
    conn = ldap.initialize(row.server_uri, bytes_mode=False)
    for option, value in connection_options(row, verify).items():
        conn.set_option(option, value)
    if row.start_tls:
        conn.start_tls_s()
    return conn


def tls_answers(row: LdapSettings) -> str:
    """For ldaps:// only: '' when the server completes a TLS handshake within the timeout, else why not.

    libldap 2.5 waits for an ldaps:// handshake without any timeout, so a server that accepts the
    connection and then says nothing would hold the login page for good; this check, with Python's
    own timeout, goes first. (Trust is not checked here: libldap does that on its own connection.)
    """
    if not row.server_uri.startswith("ldaps://"):
        return ""
    host, port = host_and_port(row.server_uri)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=row.timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return ""
    except (OSError, ssl.SSLError) as exc:
        return f"Cannot reach {row.server_uri}: {reach_reason(exc, row.timeout)}"


def reach_reason(exc: BaseException, timeout: float) -> str:
    """A failed connection in a few words: 'connection refused', 'no answer within 5 s'..."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return "that host name is not known"
    if isinstance(exc, ssl.SSLError):
        return f"it does not speak TLS there ({exc.reason or exc})"
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()


def why_unreachable(row: LdapSettings) -> str:
    """libldap says only "Can't contact LDAP server" (its errno is of its last socket call, often
    ENOTCONN): a connection of our own tells refused, timed out and unknown names apart."""
    try:
        socket.create_connection(host_and_port(row.server_uri), timeout=row.timeout).close()
    except OSError as exc:
        return reach_reason(exc, row.timeout)
    return "it accepts connections, but the LDAP or TLS conversation failed"


def user_search(row: LdapSettings) -> LDAPSearch:
    return LDAPSearch(row.user_search_base, ldap.SCOPE_SUBTREE, row.user_filter)


def group_search(row: LdapSettings) -> LDAPSearch | None:
    if not row.group_search_base:
        return None
    # Only the name: a group's member list can be long, and it is not needed.
    return LDAPSearch(row.group_search_base, ldap.SCOPE_SUBTREE, GROUP_FILTERS[row.group_type], attrlist=["cn"])


def group_type(row: LdapSettings) -> LDAPGroupType:
    return PosixGroupType() if row.group_type == LdapSettings.POSIX_GROUP else GroupOfNamesType()


def attribute_map(row: LdapSettings) -> dict[str, str]:
    pairs = {"first_name": row.first_name_attribute, "last_name": row.last_name_attribute,
             "email": row.email_attribute}
    return {name: attribute for name, attribute in pairs.items() if attribute}


def mapping(row: LdapSettings) -> groupsync.Mapping:
    return groupsync.parse(row.group_mapping, row.admin_groups)


def describe(exc: Exception, row: LdapSettings) -> str:
    """An LDAP error in plain words, for the settings page and the log."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    detail = str(info.get("info") or info.get("desc") or exc)
    if isinstance(exc, ldap.SERVER_DOWN):
        return f"Cannot reach {row.server_uri}: {why_unreachable(row) or detail}"
    if isinstance(exc, ldap.TIMEOUT):
        return f"{row.server_uri} did not answer within {row.timeout} s"
    if isinstance(exc, ldap.INVALID_CREDENTIALS):
        return "The bind DN or password was refused"
    if isinstance(exc, ldap.CONNECT_ERROR):
        return ("StartTLS failed (the server's certificate may not be trusted; the Test connection button on "
                "the LDAP settings page says why)")
    if isinstance(exc, ldap.NO_SUCH_OBJECT):
        return f"A search base does not exist on {row.server_uri}"
    return f"{row.server_uri} answered: {info.get('desc') or type(exc).__name__}" + (
        f" ({info['info']})" if info.get("info") else "")
