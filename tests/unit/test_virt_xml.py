"""The XML layer: parsing untrusted text, XMLProperty round trips, and <domain> parsing."""

from __future__ import annotations

import pytest
from lxml import etree

from webvirt.virt import errors
from webvirt.virt.domainxml import Domain
from webvirt.virt.errors import VirtError
from webvirt.virt.xmlobj import MAX_XML_BYTES, XMLObject, XMLProperty, parse

DOMAIN = """<domain type='kvm' id='4'>
  <name>web01</name>
  <uuid>0b7d3c7a-4f1e-4b49-9a3e-6f0a6c1d2e11</uuid>
  <title>Web server</title>
  <memory unit='GiB'>2</memory>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/><boot dev='cdrom'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='data.qcow2'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/><source network='default'/><model type='virtio'/><target dev='vnet3'/>
    </interface>
    <interface type='bridge'><source bridge='br0'/></interface>
    <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1' passwd='secret'/>
    <graphics type='spice' autoport='yes'/>
    <x-unknown keep='me'><child>text</child></x-unknown>
  </devices>
</domain>"""


class Memory(XMLObject):
    tag = "domain"
    name = XMLProperty[str]("./name")
    memory = XMLProperty[int]("./memory", kind=int)
    unit = XMLProperty[str]("./memory/@unit")
    acpi = XMLProperty[bool]("./features/acpi/@state", kind=bool)
    kind = XMLProperty[str]("@type")


def test_it_reads_an_attribute_an_element_and_an_integer():
    doc = Memory.from_string(DOMAIN)
    assert doc.kind == "kvm"
    assert doc.name == "web01"
    assert doc.memory == 2
    assert doc.unit == "GiB"


def test_setting_a_property_changes_only_that_and_keeps_unknown_xml():
    doc = Memory.from_string(DOMAIN)
    doc.memory = 4096
    doc.unit = "MiB"
    out = Memory.from_string(doc.to_string())
    assert (out.memory, out.unit, out.name) == (4096, "MiB", "web01")
    assert "<x-unknown keep=\"me\"><child>text</child></x-unknown>" in doc.to_string()
    assert "<features><acpi/><apic/></features>" in doc.to_string()


def test_setting_none_removes_an_attribute_or_an_element():
    doc = Memory.from_string(DOMAIN)
    doc.unit = None
    assert doc.unit is None and doc.memory == 2
    doc.memory = None
    assert doc.node.find("./memory") is None
    doc.memory = None  # Removing what is already gone is fine.
    assert doc.name == "web01"


def test_setting_a_missing_path_creates_its_elements():
    doc = Memory.from_string("<domain><name>x</name></domain>")
    doc.acpi = True
    assert doc.acpi is True
    assert etree.tostring(doc.node.find("./features")) == b'<features><acpi state="yes"/></features>'
    doc.acpi = False
    assert doc.node.find("./features/acpi").get("state") == "no"


def test_an_integer_that_is_not_a_number_reads_as_none():
    doc = Memory.from_string("<domain><memory>lots</memory></domain>")
    assert doc.memory is None


def test_it_refuses_a_different_top_element():
    with pytest.raises(VirtError) as caught:
        Memory.from_string("<network><name>default</name></network>")
    assert caught.value.kind == errors.INVALID
    assert "<domain>" in caught.value.message and "<network>" in caught.value.message


def test_it_refuses_xml_that_is_not_well_formed():
    with pytest.raises(VirtError) as caught:
        parse("<domain><name>x</domain>")
    assert caught.value.kind == errors.INVALID
    assert caught.value.message.startswith("The XML is not well-formed")


@pytest.mark.parametrize("hostile", [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    "<domain><name>&lol2;</name></domain>",
    '<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><domain><name>&xxe;</name></domain>',
    '<!doctype domain SYSTEM "http://127.0.0.1/evil.dtd"><domain/>',
])
def test_it_refuses_doctypes_and_entities(hostile):
    with pytest.raises(VirtError) as caught:
        parse(hostile)
    assert "DOCTYPE" in caught.value.message


def test_it_refuses_an_empty_or_huge_document():
    with pytest.raises(VirtError, match="not well-formed"):
        parse("   ")
    with pytest.raises(VirtError, match="larger than 1 MiB"):
        parse("<domain>" + " " * MAX_XML_BYTES + "</domain>")


def test_a_domain_reads_its_basic_settings():
    doc = Domain.from_string(DOMAIN)
    assert (doc.type, doc.name, doc.title, doc.vcpus) == ("kvm", "web01", "Web server", 4)
    assert doc.uuid == "0b7d3c7a-4f1e-4b49-9a3e-6f0a6c1d2e11"
    assert (doc.arch, doc.machine, doc.os_type) == ("x86_64", "pc-q35-7.2", "hvm")
    assert doc.emulator == "/usr/bin/qemu-system-x86_64"
    assert doc.boot_devices == ["hd", "cdrom"]


@pytest.mark.parametrize(("memory", "mib"), [
    ("<memory unit='GiB'>2</memory>", 2048),
    ("<memory unit='MiB'>512</memory>", 512),
    ("<memory unit='KiB'>1048576</memory>", 1024),
    ("<memory>262144</memory>", 256),
    ("<memory unit='bytes'>1073741824</memory>", 1024),
    ("<memory unit='G'>1</memory>", 1024),
    ("<memory unit='MB'>1000</memory>", 953),
    ("", 0),
])
def test_a_domain_reads_memory_in_any_unit_as_mib(memory, mib):
    assert Domain.from_string(f"<domain><name>m</name>{memory}</domain>").memory_mib == mib


def test_a_domain_lists_its_disks_with_their_sources():
    disks = Domain.from_string(DOMAIN).disks
    assert [d.target_dev for d in disks] == ["vda", "vdb", "sda"]
    assert disks[0].source == "/var/lib/libvirt/images/web01.qcow2"
    assert (disks[0].driver_type, disks[0].target_bus, disks[0].is_readonly) == ("qcow2", "virtio", False)
    assert disks[1].source == "default/data.qcow2"
    assert (disks[2].device, disks[2].is_readonly) == ("cdrom", True)


def test_a_domain_lists_its_interfaces():
    nics = Domain.from_string(DOMAIN).interfaces
    assert [(n.type, n.source) for n in nics] == [("network", "default"), ("bridge", "br0")]
    assert (nics[0].mac, nics[0].model, nics[0].target_dev) == ("52:54:00:aa:bb:cc", "virtio", "vnet3")
    assert nics[1].mac is None


def test_a_domain_lists_its_graphics_without_reading_the_password():
    doc = Domain.from_string(DOMAIN)
    vnc, spice = doc.graphics
    assert (vnc.type, vnc.port, vnc.autoport, vnc.listen, vnc.has_password) == ("vnc", 5901, False, "127.0.0.1", True)
    assert (spice.type, spice.port, spice.autoport, spice.has_password) == ("spice", None, True, False)
    assert doc.graphics_type == "vnc"
    assert not hasattr(vnc, "password")


def test_a_domain_without_devices_has_empty_lists():
    doc = Domain.from_string("<domain type='test'><name>bare</name></domain>")
    assert (doc.disks, doc.interfaces, doc.graphics, doc.graphics_type) == ([], [], [], "")
    assert (doc.memory_mib, doc.vcpus, doc.boot_devices) == (0, None, [])
