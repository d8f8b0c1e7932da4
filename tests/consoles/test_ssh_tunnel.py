"""The VNC console of a qemu+ssh host goes through an SSH tunnel made with the host's stored key.

A private sshd on 127.0.0.1 (its own host key, one authorized key, nothing else allowed) stands in
for a remote host; the host is registered through the API with the private key, and the console of
the running tiny guest is opened through the real web server, whose proxy answers the guest's VNC
password at the far end of the tunnel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import live
from tests.consoles.conftest import run
from tests.consoles.test_qemu_consoles import console_url, rfb_security_types, token_header
from webvirt.accounts.models import AuditEntry
from webvirt.consoles import services
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

pytestmark = pytest.mark.qemu

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    private_key: str
    log: Path


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    folder = tmp_path / "sshd"
    folder.mkdir(mode=0o700)
    keygen(folder / "host_key")
    keygen(folder / "client_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = live.free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "AllowTcpForwarding yes", "PermitOpen 127.0.0.1:*",
    ]) + "\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = folder / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while "Server listening" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.05)
    yield SshServer(port, (folder / "client_key").read_text(), log)
    proc.terminate()
    proc.wait(10)


@pytest.mark.django_db(transaction=True)
def test_the_vnc_console_of_a_qemu_ssh_host_goes_through_an_ssh_tunnel(  # type: ignore[no-untyped-def]
        sshd, live_stack, api, tiny_guest):
    uri = f"qemu+ssh://root@127.0.0.1:{sshd.port}/system?no_verify=1"
    response = api.post("/api/v1/hosts/", {"name": "over ssh", "uri": uri, "ssh_key": sshd.private_key},
                        format="json")
    assert response.status_code == 201, response.json()
    assert "ssh_key" not in response.json()
    host = Host.objects.get(pk=response.json()["id"])
    try:
        sync_host(host)
        domain = Domain.objects.select_related("host").get(host=host, uuid=tiny_guest.UUIDString())
        assert services.vnc_endpoint(domain).kind == "ssh"
        accepted_before = sshd.log.read_text(errors="replace").count("Accepted publickey")

        # The guest's VNC server wants a password; at the browser's end of the tunnel it asks for none.
        url = console_url(api, live_stack, domain, "vnc")
        assert run(rfb_security_types(url, token_header(api))) == b"\x01"
        log = sshd.log.read_text(errors="replace")
        assert log.count("Accepted publickey") >= accepted_before + 2, log  # libvirt's ssh and the tunnel's
        assert AuditEntry.objects.filter(action="console.vnc", outcome=AuditEntry.OK, object_id=str(domain.pk)).exists()

        # The key withdrawn on the server (the web process's libvirt connection stays open): the
        # tunnel's ssh is refused and the browser is told why, in ssh's words.
        (sshd.log.parent / "authorized_keys").write_text("")
        reason = run(close_reason(console_url(api, live_stack, domain, "vnc"), token_header(api)))
        assert "SSH tunnel" in reason and "Permission denied" in reason, reason
    finally:
        manager.drop(host.target().key)
        manager.forget_key(host.target())


async def close_reason(url: str, headers: dict[str, str]) -> str:
    import websockets

    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            await live.recv(ws)
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.reason if exc.rcvd else ""
    return ""
