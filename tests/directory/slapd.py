"""A private OpenLDAP server for the tests: Debian's slapd on 127.0.0.1, configured and filled here.

`Slapd.start(folder)` writes a slapd.conf (mdb database, the core/cosine/inetorgperson/nis schemas
from /etc/ldap/schema), a CA and a server certificate for 127.0.0.1 and localhost made with
cryptography, and a small directory loaded with slapadd before the server starts:

    dc=webvirt,dc=test
      ou=people:   amy (students), ben (students, teachers), cat (admins); password "<uid>-secret-1"
      ou=groups:   groupOfNames students, teachers, admins
      ou=posix:    posixGroup lab (memberUid amy)
      ou=services: cn=webvirt, the account webvirt binds as (BIND_DN / BIND_PASSWORD)

It listens on two free ports: ldap:// (plain, and StartTLS) and ldaps://. Nothing here is mocked:
webvirt talks to this server the way it would to a school's directory.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
BASE = "dc=webvirt,dc=test"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
POSIX_GROUPS = f"ou=posix,{BASE}"
BIND_DN = f"cn=webvirt,ou=services,{BASE}"
BIND_PASSWORD = "webvirt-bind-secret-1"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret-1"
# uid -> (given name, surname, groups)
PEOPLE_ROWS = {
    "amy": ("Amy", "Adams", ["students"]),
    "ben": ("Ben", "Baker", ["students", "teachers"]),
    "cat": ("Cat", "Cole", ["admins"]),
}
GROUP_NAMES = ("students", "teachers", "admins")
MISSING = ("slapd and ldap-utils are missing: install them with "
           "'apt-get install slapd ldap-utils' (or run scripts/setup.sh) to run the LDAP tests.")


def password_of(uid: str) -> str:
    return f"{uid}-secret-1"


def ssha(password: str) -> str:
    """An {SSHA} userPassword value, as slappasswd makes it."""
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Certificates ------------------------------------------------------------------------------------------

@dataclass
class Pem:
    cert: str
    key: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str = "webvirt test CA") -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Pem(_cert_pem(cert), _key_pem(key))


def make_server_cert(ca: Pem) -> Pem:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Pem(_cert_pem(cert), _key_pem(key))


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


# The directory's contents ------------------------------------------------------------------------------

def _entry(dn: str, **attrs: str | list[str]) -> str:
    lines = [f"dn: {dn}"]
    for name, values in attrs.items():
        for value in [values] if isinstance(values, str) else values:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"


def directory_ldif() -> str:
    entries = [
        _entry(BASE, objectClass=["dcObject", "organization"], dc="webvirt", o="webvirt tests"),
        *(_entry(f"ou={ou},{BASE}", objectClass="organizationalUnit", ou=ou)
          for ou in ("people", "groups", "posix", "services")),
        _entry(BIND_DN, objectClass=["organizationalRole", "simpleSecurityObject"], cn="webvirt",
               userPassword=ssha(BIND_PASSWORD)),
    ]
    for uid, (given, surname, _groups) in PEOPLE_ROWS.items():
        entries.append(_entry(f"uid={uid},{PEOPLE}", objectClass="inetOrgPerson", uid=uid, givenName=given,
                              sn=surname, cn=f"{given} {surname}", mail=f"{uid}@school.test",
                              userPassword=ssha(password_of(uid))))
    for group in GROUP_NAMES:
        members = [f"uid={uid},{PEOPLE}" for uid, row in PEOPLE_ROWS.items() if group in row[2]]
        entries.append(_entry(f"cn={group},{GROUPS}", objectClass="groupOfNames", cn=group, member=members))
    entries.append(_entry(f"cn=lab,{POSIX_GROUPS}", objectClass="posixGroup", cn="lab", gidNumber="5000",
                          memberUid="amy"))
    return "\n".join(entries)


def slapd_conf(folder: Path) -> str:
    includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    return f"""{includes}
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {folder}/ca.pem
TLSCertificateFile {folder}/server.pem
TLSCertificateKeyFile {folder}/server.key

database mdb
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ssha(ROOT_PASSWORD)}
directory {folder}/data
maxsize 33554432
index objectClass eq
index uid,cn,member,memberUid eq

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by users read
    by * none
"""


# The server ---------------------------------------------------------------------------------------------

@dataclass
class Slapd:
    folder: Path
    port: int
    tls_port: int
    ca: Pem
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @classmethod
    def start(cls, folder: Path) -> Slapd:
        for tool in (SLAPD, SLAPADD):
            if not Path(tool).exists():
                raise RuntimeError(MISSING)
        ca = make_ca()
        server = make_server_cert(ca)
        (folder / "data").mkdir(parents=True)
        (folder / "ca.pem").write_text(ca.cert)
        (folder / "server.pem").write_text(server.cert)
        (folder / "server.key").write_text(server.key)
        (folder / "server.key").chmod(0o600)
        (folder / "slapd.conf").write_text(slapd_conf(folder))
        (folder / "directory.ldif").write_text(directory_ldif())
        subprocess.run([SLAPADD, "-f", str(folder / "slapd.conf"), "-l", str(folder / "directory.ldif")],
                       check=True, capture_output=True, timeout=60)
        port, tls_port = free_port(), free_port()
        urls = f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
        # -d 0: stays in the foreground (the fixture owns the process) and logs nothing.
        log = (folder / "slapd.log").open("wb")
        process = subprocess.Popen([SLAPD, "-f", str(folder / "slapd.conf"), "-h", urls, "-d", "0"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server_ = cls(folder, port, tls_port, ca, process)
        server_.wait_ready()
        return server_

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5), \
                        socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not listen within {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.folder / "slapd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # slapd's clean shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def admin_connection(self) -> Any:
        """A python-ldap connection bound as the directory's root, to change it during a test."""
        import ldap  # type: ignore[import-untyped]

        conn = ldap.initialize(self.uri)
        conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
        return conn


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
