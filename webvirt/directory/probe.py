"""The "Test connection" button: each step a sign-in takes, tried in order and said in plain words.

1. reach the server (TCP), 2. TLS (ldaps://) or StartTLS, 3. bind with the bind DN, 4. count the
users the filter finds under the user search base, 5. with a test user name: find that user, read
their groups and say how the mapping turns them into webvirt groups. The first step that fails ends
the test with its reason; a refused certificate is looked at again (fetched without checking it) to
say what is wrong with it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from contextlib import suppress
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import ldap  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.directory import services
from webvirt.directory.models import LdapSettings

COUNT_LIMIT = 1000


@dataclass
class Report:
    ok: bool = True
    lines: list[str] = field(default_factory=list)


class Failed(Exception):
    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


def check(actor: Actor, data: services.LdapData, test_user: str = "") -> Report:
    """Try the settings as typed (not saved yet): the page's Test connection button. Administrators only."""
    policy.require_admin(actor.user)
    return run(services.trial_settings(data), test_user)


def run(row: LdapSettings, test_user: str = "") -> Report:
    report = Report()
    conn = None
    try:
        conn = _connect(row)
        report.lines.append(_connected(row))
        count = _count_users(conn, row)
        if test_user.strip():
            report.lines.append(f"{count}; {_describe_user(conn, row, test_user.strip())}")
        else:
            report.lines.append(f"{count}.")
    except Failed as exc:
        report.ok = False
        report.lines.append(exc.sentence)
    except ldap.LDAPError as exc:
        report.ok = False
        report.lines.append(services.describe(exc, row) + ".")
    finally:
        if conn is not None:
            with suppress(ldap.LDAPError):
                conn.unbind_s()
    return report


def _connected(row: LdapSettings) -> str:
    how = " (TLS)" if row.server_uri.startswith("ldaps://") else " with StartTLS" if row.start_tls else ""
    who = f"as {row.bind_dn}" if row.bind_dn else "anonymously"
    return f"Connected to {row.server_uri}{how} and bound {who}."


# Steps 1 to 3: reach, TLS, bind ------------------------------------------------------------------

def _connect(row: LdapSettings) -> Any:
    host, port = services.host_and_port(row.server_uri)
    try:
        socket.create_connection((host, port), timeout=row.timeout).close()
    except OSError as exc:
        raise Failed(f"Cannot reach {row.server_uri}: {services.reach_reason(exc, row.timeout)}.") from None
    certificate = _ldaps_certificate(row, host, port) if row.server_uri.startswith("ldaps://") else None
    try:
        conn = services.open_connection(row)
    except (ldap.CONNECT_ERROR, ldap.SERVER_DOWN):
        raise Failed("StartTLS failed: " + _starttls_problem(row, host)) from None
    except ldap.TIMEOUT:
        raise Failed(f"StartTLS failed: {row.server_uri} did not answer within {row.timeout} s.") from None
    except ldap.LDAPError as exc:
        raise Failed(f"StartTLS failed: the server does not offer it ({_words(exc)}).") from None
    try:
        conn.simple_bind_s(row.bind_dn, row.password() if row.bind_dn else "")
    except ldap.INVALID_CREDENTIALS:
        raise Failed("The bind DN or password was refused.") from None
    except ldap.UNWILLING_TO_PERFORM as exc:
        raise Failed(f"The server refused the bind: {_words(exc)} (is the bind password set?).") from None
    except ldap.SERVER_DOWN as exc:
        if certificate is not None:
            raise Failed("TLS failed: " + explain_certificate(certificate, host, row.ca_certificate)) from None
        raise Failed(services.describe(exc, row) + ".") from None
    return conn


def _ldaps_certificate(row: LdapSettings, host: str, port: int) -> bytes:
    """The server's certificate, unchecked: only to say later what is wrong with it, if libldap refuses it."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=row.timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True) or b""
    except (OSError, ssl.SSLError) as exc:
        raise Failed(f"Cannot reach {row.server_uri}: {services.reach_reason(exc, row.timeout)}.") from None


def _starttls_problem(row: LdapSettings, host: str) -> str:
    """Why StartTLS failed: try again without checking the certificate, and look at it."""
    try:
        conn = services.open_connection(row, verify=False)
    except ldap.LDAPError as exc:
        return f"the server does not complete it ({_words(exc)})."
    try:
        certificate = conn.get_option(ldap.OPT_X_TLS_PEERCERT) or b""
    finally:
        with suppress(ldap.LDAPError):
            conn.unbind_s()
    return explain_certificate(certificate, host, row.ca_certificate)


def explain_certificate(der: bytes, host: str, ca_pem: str) -> str:
    """What is wrong with the server's certificate, as a sentence ending in a full stop."""
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError:
        return "the server's certificate was refused and could not be read."
    if ca_pem:
        cas = x509.load_pem_x509_certificates(ca_pem.encode())
        if not any(_issued_by(leaf, ca) for ca in cas):
            return (f"the server's certificate is not trusted by the CA you gave (it was issued by "
                    f"{leaf.issuer.rfc4514_string()}).")
    names = _names(leaf)
    if not _matches(host, names):
        return (f"the server's certificate is for {', '.join(names) or leaf.subject.rfc4514_string()}, not {host}: "
                "use one of those names in the server address.")
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        return f"the server's certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}."
    if leaf.not_valid_before_utc > now:
        return f"the server's certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}."
    if not ca_pem:
        return ("the server's certificate is not trusted by this machine's certificate authorities: paste the CA "
                "certificate of your directory above.")
    return "the server's certificate was refused."


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _names(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))]


def _matches(host: str, names: list[str]) -> bool:
    with suppress(ValueError):
        return str(ipaddress.ip_address(host)) in names
    host = host.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host or (name.startswith("*.") and host.split(".", 1)[-1] == name[2:] and "." in host):
            return True
    return False


# Steps 4 and 5: users and one user's groups ---------------------------------------------------------

def _count_users(conn: Any, row: LdapSettings) -> str:
    everyone = row.user_filter % {"user": "*"}
    try:
        found = conn.search_ext_s(row.user_search_base, ldap.SCOPE_SUBTREE, everyone, ["1.1"],
                                  sizelimit=COUNT_LIMIT + 1)
    except ldap.NO_SUCH_OBJECT:
        raise Failed(f"The user search base {row.user_search_base} does not exist.") from None
    except ldap.FILTER_ERROR:
        raise Failed(f"The user filter {row.user_filter} is not a valid LDAP filter.") from None
    except ldap.INSUFFICIENT_ACCESS:
        raise Failed(f"{row.bind_dn or 'An anonymous connection'} may not search {row.user_search_base}.") from None
    except (ldap.SIZELIMIT_EXCEEDED, ldap.ADMINLIMIT_EXCEEDED):
        return "Found many users (more than the server lists in one search)"
    count = sum(1 for dn, _attrs in found if dn)
    if count > COUNT_LIMIT:
        return f"Found more than {COUNT_LIMIT} users"
    if count == 0:
        raise Failed(f"Found no users under {row.user_search_base} with the filter {everyone}: check the base and "
                     "the filter (and that the bind DN may read them).")
    return f"Found {count} user{'s' if count != 1 else ''}"


def _describe_user(conn: Any, row: LdapSettings, name: str) -> str:
    found = [r for r in services.user_search(row).execute(conn, {"user": name}) if r[0]]
    if not found:
        return f"nobody named {name} (filter {row.user_filter % {'user': name}})."
    if len(found) > 1:
        return f"{len(found)} entries match {name}: the user filter must find exactly one."
    dn, attrs = found[0]
    who = f"{name} ({_person(row, attrs) or dn})"
    search = services.group_search(row)
    if search is None:
        return f"{who} was found; no group search base is set, so their groups are not read."
    user = SimpleNamespace(dn=dn, attrs=attrs, connection=conn)  # what the group types read
    infos = services.group_type(row).user_groups(user, search)
    names = sorted({n for n in (services.group_type(row).group_name_from_info(i) for i in infos) if n})
    outside = {n.lower() for n in names} | {i[0].lower() for i in infos}
    mapping = services.mapping(row)
    webvirt = sorted({mapping.groups[o] for o in outside if o in mapping.groups})
    admin = "; administrator" if mapping.admin and outside & mapping.admin else ""
    groups = f"is in {', '.join(names)}" if names else "is in no group"
    return f"{who} {groups} → webvirt groups: {', '.join(webvirt) or 'none'}{admin}."


def _person(row: LdapSettings, attrs: dict[str, list[str]]) -> str:
    def first(attribute: str) -> str:
        values = attrs.get(attribute) if attribute else None
        return values[0] if values else ""

    full = " ".join(v for v in (first(row.first_name_attribute), first(row.last_name_attribute)) if v)
    return ", ".join(v for v in (full, first(row.email_attribute)) if v)


def _words(exc: Exception) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("info") or info.get("desc") or type(exc).__name__)
