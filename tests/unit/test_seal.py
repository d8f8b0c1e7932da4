"""Sealing's answers that need no disk: hosts it cannot seal, a worker without libguestfs, and
virt-sysprep's failures condensed to one line (the outputs below are virt-sysprep 1.48's, verbatim).
The real seal of a real disk is tests/integration/test_seal.py.
"""

from __future__ import annotations

import pytest

from webvirt.virt import seal


@pytest.mark.parametrize("uri", ["qemu+ssh://root@vmhost.example/system", "qemu+tcp://vmhost2.example/system",
                                 "qemu+tls://vmhost/system?no_verify=1"])
def test_a_template_on_another_host_is_not_sealed_and_says_why(uri):
    result = seal.seal(uri, "debian-template")
    assert not result.sealed
    assert "Only templates on this machine can be sealed" in result.reason
    assert result.operations == [] and result.seconds == 0.0


@pytest.mark.parametrize("uri", ["test:///default", "test+unix:///default"])
def test_a_test_driver_domain_has_no_disk_to_seal(uri):
    result = seal.seal(uri, "test")
    assert not result.sealed
    assert result.reason == "Domains of libvirt's test driver have no disk image to seal."


def test_a_domain_of_another_driver_is_not_sealed():
    assert "Only QEMU domains" in seal.seal("lxc:///system", "box").reason


def test_a_worker_without_libguestfs_says_so_and_does_not_seal(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no virt-sysprep on it
    assert seal.available().startswith("libguestfs-tools is not installed on the webvirt worker")
    result = seal.seal("qemu:///system", "debian-template")
    assert not result.sealed and result.reason == seal.available()


def test_disk_files_on_another_host_are_not_sealed_either():
    result = seal.seal_disks("qemu+ssh://root@vmhost.example/system", [("/var/lib/libvirt/images/t.qcow2", "qcow2")])
    assert not result.sealed and "another host" in result.reason


@pytest.mark.parametrize("disks", [[], [("/images/t.qcow2", "")], [("", "qcow2")]])
def test_disk_files_without_a_format_are_a_programming_error(disks):
    with pytest.raises(ValueError):
        seal.seal_disks("qemu:///system", disks)


def test_a_local_uri_with_a_host_name_is_opened_without_its_transport():
    assert seal._local_uri("qemu:///system") == "qemu:///system"
    assert seal._local_uri("qemu+ssh://root@localhost/system?keyfile=/k") == "qemu:///system"
    assert seal._local_uri("qemu+tcp://127.0.0.1/session") == "qemu:///session"
    assert seal._local_uri("qemu+unix:///system?socket=/run/s") == "qemu+unix:///system?socket=/run/s"


NO_OS = """[   0.0] Examining the guest ...
virt-sysprep: error: no operating systems were found in the guest image

If reporting bugs, run virt-sysprep with debugging enabled and include the complete output:

  virt-sysprep -v -x [...]
"""
LIVE = """[   0.0] Examining the guest ...
virt-sysprep: error: libguestfs error: error: domain is a live virtual machine.
Writing to the disks of a running virtual machine can cause disk corruption.
Use read-only access.  In most libguestfs tools use --ro.

If reporting bugs, run virt-sysprep with debugging enabled and include the complete output:

  virt-sysprep -v -x [...]
"""


def test_a_failure_is_its_last_error_on_one_line():
    assert seal.condense(NO_OS, 1) == "virt-sysprep: no operating systems were found in the guest image"
    assert seal.condense(LIVE, 1) == (
        "virt-sysprep: domain is a live virtual machine. Writing to the disks of a running virtual "
        "machine can cause disk corruption. Use read-only access.  In most libguestfs tools use --ro.")


def test_a_failure_without_an_error_line_names_the_exit_status_and_last_line():
    assert seal.condense("[   0.0] Examining the guest ...\nKilled\n", 137) == (
        "virt-sysprep failed (exit status 137): Killed")
    assert seal.condense("", 1) == "virt-sysprep failed (exit status 1)."
