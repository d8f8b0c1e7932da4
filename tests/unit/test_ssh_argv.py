"""The SSH tunnel's command line: whatever a host's URI says, ssh never reads it as an option.

A URI like qemu+ssh://-oProxyCommand=sh%20-c%20.../system would otherwise make `ssh` run a command
on the webvirt machine when someone opens the console.
"""

from __future__ import annotations

import subprocess

import pytest

from webvirt.consoles.tunnel import ssh_command
from webvirt.hosts.models import Host
from webvirt.virt.console import VncEndpoint
from webvirt.virt.errors import VirtError


def endpoint(target: str = "alice@vmhost", host: str = "127.0.0.1") -> VncEndpoint:
    return VncEndpoint("ssh", host, 5901, ssh_target=target, ssh_port=2222)


def test_the_destination_comes_after_a_double_dash():
    argv = ssh_command(Host(name="h", uri="qemu+ssh://alice@vmhost:2222/system"), endpoint())
    assert argv[0] == "ssh"
    assert argv[-4:] == ["-W", "127.0.0.1:5901", "--", "alice@vmhost"]
    assert argv.index("--") == len(argv) - 2  # nothing after it but the destination


@pytest.mark.parametrize("target", ["-oProxyCommand=touch /tmp/webvirt-pwned", "-F/dev/null", ""])
def test_a_destination_that_looks_like_an_option_is_refused(target: str) -> None:
    with pytest.raises(VirtError) as refused:
        ssh_command(Host(name="h", uri="qemu+ssh://x/system"), endpoint(target))
    assert refused.value.kind == "invalid"
    assert "must not be empty or start with '-'" in refused.value.message


def test_a_vnc_address_that_looks_like_an_option_is_refused():
    with pytest.raises(VirtError):
        ssh_command(Host(name="h", uri="qemu+ssh://x/system"), endpoint(host="-oProxyCommand=x"))


def test_ssh_itself_takes_what_follows_the_double_dash_as_the_destination(tmp_path):
    # The real ssh, given a would-be option after "--": it tries to resolve it as a host name and
    # never runs the command (nothing is listening and nothing resolves, so it fails fast).
    marker = tmp_path / "ran"
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "--", f"-oProxyCommand=touch {marker}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert not marker.exists()
