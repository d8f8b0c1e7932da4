"""`manage.py addhosts FILE`: many hosts registered at once, all or none, each tested with one connection.

The hosts are libvirt's test driver through the daemon, one node file per host
(`test+unix:///<abs>/nodeNN.xml`): every connection to such a URI is a host of its own, with the
domains its file lists.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.unit.test_api_hosts import libvirtd_clients
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

# Node files are read by the machine's libvirtd (a session daemon could not read the test's folder).
pytestmark = [pytest.mark.django_db, pytest.mark.system]
HEADER = "name,uri,description,username,migration_uri\n"


def write_node(folder: Path, number: int, domains: int) -> Path:
    """A test-driver node file of `domains` shut-off and running domains, with UUIDs of its own."""
    parts = ["<node>"]
    for i in range(domains):
        runstate = "<test:runstate>5</test:runstate>" if i % 3 == 0 else ""  # 5: shut off
        parts.append(f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                     f"<name>n{number:03d}-d{i:03d}</name><uuid>{uuidlib.uuid4()}</uuid>"
                     f"<memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
                     f"{runstate}</domain>")
    path = folder / f"node{number:03d}.xml"
    path.write_text("\n".join([*parts, "</node>\n"]))
    return path


def write_file(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "hosts.csv"
    path.write_text(header + "".join(f"{line}\n" for line in lines))
    return path


def node_rows(tmp_path: Path, hosts: int, domains: int) -> list[str]:
    return [f"node{n:03d},test+unix://{write_node(tmp_path, n, domains)},rack {n % 4},,"
            for n in range(1, hosts + 1)]


def addhosts(*args: str) -> str:
    out = StringIO()
    call_command("addhosts", *args, stdout=out)
    return out.getvalue()


def test_it_registers_100_hosts_of_100_domains_quickly_with_one_connection_each(admin, tmp_path, opened):
    rows = node_rows(tmp_path, 100, 100)
    before = libvirtd_clients("qemu:///system")
    started = time.monotonic()
    out = addhosts(str(write_file(tmp_path, rows)))
    took = time.monotonic() - started
    print(f"addhosts: 100 hosts of 100 domains in {took:.1f} s")
    assert out.startswith("Registered 100 hosts with 10000 domains in ")
    assert took < 60
    assert sorted(opened) == sorted(row.split(",")[1] for row in rows)  # one connection per host
    assert libvirtd_clients("qemu:///system") <= before  # and every one closed again
    assert Host.objects.filter(status=Host.ONLINE, facts__hypervisor="TEST").count() == 100
    assert Domain.objects.count() == 10_000
    node7 = Host.objects.get(name="node007")
    assert node7.description == "rack 3" and node7.uri == rows[6].split(",")[1]
    assert set(Domain.objects.filter(host=node7).values_list("state", flat=True)) == {"running", "shutoff"}
    entries = AuditEntry.objects.filter(action="host.create", outcome=AuditEntry.OK, via="cli", user=admin)
    assert entries.count() == 100
    assert AuditEntry.objects.get(action="host.create_many").outcome == AuditEntry.OK


def test_without_checking_it_registers_the_rows_and_connects_to_nothing(admin, tmp_path, opened):
    rows = [*node_rows(tmp_path, 3, 2), "far,qemu+ssh://root@far.example/system,,,tcp://10.0.0.9"]
    out = addhosts(str(write_file(tmp_path, rows)), "--no-check")
    assert out.startswith("Registered 4 hosts without testing them")
    assert opened == []
    assert Host.objects.count() == 4 and not Domain.objects.exists()
    assert set(Host.objects.values_list("status", flat=True)) == {Host.UNKNOWN}
    assert Host.objects.get(name="far").migration_uri == "tcp://10.0.0.9"
    assert AuditEntry.objects.filter(action="host.create", outcome=AuditEntry.OK).count() == 4


def test_one_host_that_fails_registers_none_and_every_failure_is_listed(admin, tmp_path, opened):
    rows = node_rows(tmp_path, 3, 2)
    rows[1] = "closed,qemu+tcp://127.0.0.1:1/system,,,"
    rows.append(f"missing,test+unix://{tmp_path}/no-such-node.xml,,,")
    with pytest.raises(CommandError) as failure:
        addhosts(str(write_file(tmp_path, rows)))
    message = str(failure.value)
    assert "Nothing was registered: 2 of 4 hosts failed" in message
    assert "line 3 (closed): The host refused the connection." in message
    assert "line 5 (missing): " in message and "line 2" not in message
    assert len(opened) == 4  # every host was tried, so that every failure is known at once
    assert not Host.objects.exists() and not Domain.objects.exists()
    failed = AuditEntry.objects.filter(action="host.create", outcome=AuditEntry.FAILED)
    assert sorted(failed.values_list("object_repr", flat=True)) == ["closed", "missing"]
    assert not AuditEntry.objects.filter(action="host.create", outcome=AuditEntry.OK).exists()
    assert AuditEntry.objects.get(action="host.create_many").outcome == AuditEntry.FAILED


def test_the_file_is_checked_as_a_whole_before_anything_connects(admin, test_host, tmp_path, opened):
    rows = ["a,test+unix:///default,,,", "a,test+unix:///default,,,", "testhost,test+unix:///default,,,",
            ",test+unix:///default,,,", "b,not a uri,,,", "c,foo:///x,,,", "d,test+unix:///default,,,ftp://x",
            "e,test+unix:///default,,,,surplus"]
    with pytest.raises(CommandError) as failure:
        addhosts(str(write_file(tmp_path, rows)))
    assert str(failure.value).splitlines()[1:] == [
        "line 3: the name 'a' is already used on line 2.",
        "line 4: A host named 'testhost' is already registered. Choose another name.",
        "line 5: Give the host a name.",
        "line 6: That is not a libvirt URI. It looks like qemu:///system or qemu+ssh://user@host/system.",
        "line 7: libvirt has no driver for the scheme 'foo'. Use one of qemu:///, qemu+ssh://, qemu+tcp://, "
        "qemu+tls:// or test+unix:///.",
        "line 8: 'ftp://x' is not a migration address: give one like tcp://10.0.0.5 or tcp://10.0.0.5:49152, "
        "or leave it empty.",
        "line 9: it has more cells than the header has columns."]
    assert opened == [] and list(Host.objects.values_list("name", flat=True)) == ["testhost"]


@pytest.mark.parametrize(("header", "sentence"), [
    ("name,uri,password\n", "line 1: the column 'password' would hold a secret, which does not belong in a file"),
    ("name,url\n", "line 1: webvirt knows no column 'url'; the columns are name, uri, description, username, "
                   "migration_uri."),
    ("name,uri\n", "it has a header and no hosts."),
])
def test_a_file_with_a_wrong_header_or_no_rows_is_refused(admin, tmp_path, header, sentence):
    with pytest.raises(CommandError) as failure:
        addhosts(str(write_file(tmp_path, [], header=header)))
    assert sentence in str(failure.value)
    assert not Host.objects.exists()


def test_only_someone_the_policy_lets_add_hosts_may_run_it(admin, stranger, tmp_path, opened):
    path = write_file(tmp_path, node_rows(tmp_path, 1, 1))
    with pytest.raises(CommandError, match=r"You are not allowed to do that\."):
        addhosts(str(path), "--user", "charlie")
    assert opened == [] and not Host.objects.exists()
    assert AuditEntry.objects.get(action="host.create_many").outcome == AuditEntry.REFUSED
