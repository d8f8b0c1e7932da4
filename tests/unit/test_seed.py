"""cloud-init NoCloud seeds (webvirt.virt.seed): the ISO, user-data merging, checks, and the domain XML.

The ISO is read back with pycdlib by the names Linux (Rock Ridge) and Windows (Joliet) see; XML with a
seed is defined on libvirt's test driver, which validates it and keeps the seed's metadata.
"""

from __future__ import annotations

import io
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import libvirt
import pycdlib
import pytest
import yaml
from lxml import etree
from passlib.hash import sha512_crypt

from tests.conftest import domain_xml
from tests.people import unique
from webvirt.virt import clone, domains, errors, seed
from webvirt.virt.errors import VirtError

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 alice@laptop"
KEY_B = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI bob@desk"
HASH = "$6$rounds=100000$saltsalt$" + "x" * 86


def read_iso(data: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


def iso_file(iso: pycdlib.PyCdlib, **path: str) -> str:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue().decode()


def seed_disks(xml: str) -> list[etree._Element]:
    return etree.fromstring(xml.encode()).findall("./devices/disk[@device='cdrom']")


def machine_xml(machine: str, *extra_disks: str) -> str:
    return (f"<domain type='kvm'><name>m</name><os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
            "<devices><disk type='file' device='disk'><source file='/p/m.qcow2'/><target dev='vda' bus='virtio'/>"
            f"</disk>{''.join(extra_disks)}</devices></domain>")


# The ISO ---------------------------------------------------------------------------------------------

def test_a_seed_iso_is_labelled_cidata_and_holds_its_files_by_their_real_names():
    data = seed.seed_iso(seed.Seed(instance_id="i-0123", hostname="exam-01", user_data="#cloud-config\n{}\n",
                                   network_config="version: 2\nethernets: {}\n"))
    iso = read_iso(data)
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        assert iso.joliet_vd is not None and iso.rock_ridge == "1.09"
        names = sorted(c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/")
                       if c.rock_ridge is not None and not c.is_dot() and not c.is_dotdot())
        assert names == ["meta-data", "network-config", "user-data"]
        for path in ("rr_path", "joliet_path"):
            assert yaml.safe_load(iso_file(iso, **{path: "/meta-data"})) == {"instance-id": "i-0123",
                                                                             "local-hostname": "exam-01"}
            assert iso_file(iso, **{path: "/user-data"}) == "#cloud-config\n{}\n"
            assert iso_file(iso, **{path: "/network-config"}) == "version: 2\nethernets: {}\n"
    finally:
        iso.close()
    assert len(data) < 128 * 1024


def test_a_seed_without_network_config_has_no_such_file():
    iso = read_iso(seed.seed_iso(seed.Seed(instance_id="i", hostname="h", user_data="#cloud-config\n")))
    try:
        names = {c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/") if c.rock_ridge is not None}
        assert "network-config" not in names and {"meta-data", "user-data"} <= names
    finally:
        iso.close()


def test_meta_data_quotes_values_that_yaml_would_read_as_something_else():
    text = seed.meta_data(seed.Seed(instance_id="yes", hostname="0123", user_data=""))
    assert yaml.safe_load(text) == {"instance-id": "yes", "local-hostname": "0123"}
    assert text.splitlines()[0].startswith("instance-id: ")


def test_a_seed_needs_an_instance_id_and_a_hostname():
    with pytest.raises(VirtError, match="needs an instance-id and a hostname") as caught:
        seed.seed_iso(seed.Seed(instance_id=" ", hostname="h", user_data=""))
    assert caught.value.kind == errors.INVALID


# user-data ---------------------------------------------------------------------------------------------

def parsed(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_keys_go_to_the_default_user_at_the_top_without_duplicates():
    config = f"#cloud-config\npackages: [vim]\nssh_authorized_keys:\n  - {KEY_A}\nruncmd: [date]\n"
    out = parsed(seed.user_data(config, [KEY_A, KEY_B, KEY_B, "  "]))
    assert out["ssh_authorized_keys"] == [KEY_A, KEY_B]
    assert list(out) == ["packages", "ssh_authorized_keys", "runcmd"]  # the administrator's order is kept
    assert out["packages"] == ["vim"] and out["runcmd"] == ["date"]


def test_keys_go_to_the_login_users_entry_when_the_config_defines_that_user():
    config = "users:\n  - default\n  - name: student\n    ssh_authorized_keys: [" + KEY_A + "]\n"
    out = parsed(seed.user_data(config, [KEY_A, KEY_B], login_user="student"))
    assert out["users"][0] == "default"
    assert out["users"][1]["ssh_authorized_keys"] == [KEY_A, KEY_B]
    assert "ssh_authorized_keys" not in out


def test_keys_for_a_user_the_config_does_not_define_go_to_the_top():
    out = parsed(seed.user_data("users: [default]\n", [KEY_A], login_user="student"))
    assert out == {"users": ["default"], "ssh_authorized_keys": [KEY_A]}


def test_a_single_key_given_as_a_string_is_kept():
    out = parsed(seed.user_data(f"ssh_authorized_keys: {KEY_A}\n", [KEY_B]))
    assert out["ssh_authorized_keys"] == [KEY_A, KEY_B]


def test_nothing_to_merge_leaves_the_config_as_it_was_and_the_output_is_deterministic():
    config = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hello\nbootcmd: [true]\n"
    first = seed.user_data(config, [])
    assert first == seed.user_data(config, [])
    assert parsed(first) == yaml.safe_load(config)
    assert parsed(seed.user_data("", [])) == {}


def test_a_long_key_stays_on_one_line():
    key = "ssh-rsa " + "A" * 700 + " carol@host"
    text = seed.user_data("", [key])
    assert f"- {key}\n" in text


def test_a_password_becomes_a_chpasswd_hash_entry_and_nothing_in_clear():
    plain = "correct horse battery"
    hashed = seed.hash_password(plain)
    text = seed.user_data("#cloud-config\n", [KEY_A], password_hash=hashed, login_user="debian")
    out = parsed(text)
    assert out["chpasswd"] == {"expire": False, "users": [{"name": "debian", "password": hashed, "type": "hash"}]}
    assert out["ssh_pwauth"] is True
    assert plain not in text and "horse" not in text


def test_a_password_replaces_the_configs_entry_for_that_user_and_keeps_the_rest():
    config = ("chpasswd:\n  expire: true\n  users:\n    - {name: debian, password: old, type: text}\n"
              "    - {name: root, password: '$6$abc', type: hash}\nssh_pwauth: false\n")
    out = parsed(seed.user_data(config, [], password_hash=HASH, login_user="debian"))
    assert out["chpasswd"] == {"expire": True, "users": [{"name": "root", "password": "$6$abc", "type": "hash"},
                                                         {"name": "debian", "password": HASH, "type": "hash"}]}
    assert out["ssh_pwauth"] is False  # the administrator turned password logins over SSH off


def test_a_password_needs_the_user_it_is_for_and_must_be_a_hash():
    with pytest.raises(VirtError, match="Name the user the password is for") as caught:
        seed.user_data("", [], password_hash=HASH)
    assert caught.value.kind == errors.INVALID
    with pytest.raises(VirtError, match="crypt hash") as caught:
        seed.user_data("", [], password_hash="hunter2-hunter2", login_user="debian")
    assert caught.value.kind == errors.INVALID


# Checks --------------------------------------------------------------------------------------------------

def test_invalid_yaml_is_refused_with_its_line_and_column():
    with pytest.raises(VirtError) as caught:
        seed.check_cloud_config("#cloud-config\nruncmd:\n  - date\nusers: x: y\n")
    assert caught.value.kind == errors.INVALID
    assert str(caught.value) == ("The user-data is not valid YAML: line 4, column 9: "
                                 "mapping values are not allowed here.")


def test_a_config_that_is_not_a_mapping_is_refused():
    with pytest.raises(VirtError, match=r"must be a mapping.*not a list") as caught:
        seed.check_cloud_config("#cloud-config\n- a\n- b\n")
    assert caught.value.kind == errors.INVALID
    with pytest.raises(VirtError, match="not plain text"):
        seed.user_data("just words", [])
    with pytest.raises(VirtError, match="The network-config must be a mapping"):
        seed.check_network_config("42")


def test_an_empty_config_or_only_the_header_is_an_empty_mapping():
    assert seed.check_cloud_config("") == {}
    assert seed.check_cloud_config("#cloud-config\n") == {}
    assert seed.check_network_config("") == {}
    assert seed.check_network_config("version: 2\n") == {"version": 2}


def test_yaml_tags_that_build_python_objects_are_refused():
    with pytest.raises(VirtError, match="line 1, column 4: could not determine a constructor"):
        seed.check_cloud_config("x: !!python/object/apply:os.system [true]\n")


def test_passwords_are_hashed_with_sha512_crypt():
    hashed = seed.hash_password("s3cret-enough")
    assert hashed.startswith(f"$6$rounds={seed.PASSWORD_ROUNDS}$")
    assert sha512_crypt.verify("s3cret-enough", hashed) and not sha512_crypt.verify("s3cret-enougH", hashed)
    assert seed.hash_password("s3cret-enough") != hashed  # a new salt each time


@pytest.mark.parametrize("plain", ["", "        ", "short"])
def test_empty_blank_or_short_passwords_are_refused(plain):
    with pytest.raises(VirtError) as caught:
        seed.hash_password(plain)
    assert caught.value.kind == errors.INVALID


# Domain XML -----------------------------------------------------------------------------------------------

def test_attach_on_a_pc_machine_adds_a_read_only_ide_cdrom_at_hdc_and_records_the_seed():
    xml = seed.attach(machine_xml("pc-i440fx-8.2"), "/pool/m-cidata.iso")
    (disk,) = seed_disks(xml)
    assert disk.get("type") == "file"
    assert (disk.find("driver").get("name"), disk.find("driver").get("type")) == ("qemu", "raw")
    assert disk.find("source").get("file") == "/pool/m-cidata.iso"
    assert (disk.find("target").get("dev"), disk.find("target").get("bus")) == ("hdc", "ide")
    assert disk.find("readonly") is not None
    record = etree.fromstring(xml.encode()).find(f"./metadata/{{{seed.SEED_NS}}}seed")
    assert record is not None and record.get("path") == "/pool/m-cidata.iso"
    assert seed.seed_paths(xml) == ["/pool/m-cidata.iso"]


def test_attach_takes_the_next_free_target_beside_an_installation_cdrom():
    iso = "<disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='hdc' bus='ide'/></disk>"
    xml = seed.attach(machine_xml("pc", iso), "/pool/s.iso")
    assert [d.find("target").get("dev") for d in seed_disks(xml)] == ["hdc", "hdd"]
    assert seed.seed_paths(xml) == ["/pool/s.iso"]  # the installation ISO is not ours


def test_attach_on_a_q35_machine_uses_sata():
    iso = "<disk type='file' device='cdrom'><source file='/iso/d.iso'/><target dev='sda' bus='sata'/></disk>"
    (disk,) = seed_disks(seed.attach(machine_xml("pc-q35-8.2"), "/pool/q.iso"))
    assert (disk.find("target").get("dev"), disk.find("target").get("bus")) == ("sda", "sata")
    targets = [d.find("target").get("dev") for d in seed_disks(seed.attach(machine_xml("q35", iso), "/pool/q.iso"))]
    assert targets == ["sda", "sdb"]


def test_a_domain_gets_one_seed_and_no_more_than_four_ide_devices():
    with pytest.raises(VirtError, match="already has a cloud-init seed") as caught:
        seed.attach(seed.attach(machine_xml("pc"), "/pool/a.iso"), "/pool/b.iso")
    assert caught.value.kind == errors.CONFLICT
    full = [f"<disk type='file' device='cdrom'><target dev='{t}' bus='ide'/></disk>" for t in seed.IDE_TARGETS]
    with pytest.raises(VirtError, match="no free IDE slot"):
        seed.attach(machine_xml("pc", *full), "/pool/c.iso")


def test_drop_removes_the_seed_cdrom_and_its_record_and_keeps_everything_else():
    iso = "<disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='hdc' bus='ide'/></disk>"
    xml = machine_xml("pc", iso).replace(
        "<devices>", f"<metadata><webvirt:template xmlns:webvirt='{clone.TEMPLATE_NS}'/></metadata><devices>")
    dropped = etree.fromstring(seed.drop(seed.attach(xml, "/pool/s.iso")).encode())
    assert [d.find("source").get("file") for d in dropped.findall("./devices/disk[@device='cdrom']")] == [
        "/iso/debian.iso"]
    assert dropped.find(f"./metadata/{{{seed.SEED_NS}}}seed") is None
    assert dropped.find(f"./metadata/{{{clone.TEMPLATE_NS}}}template") is not None
    assert seed.drop(xml) == xml  # no seed: not rewritten


# On libvirt's test driver -----------------------------------------------------------------------------------

@pytest.fixture
def seeded_domain(test_conn: libvirt.virConnect, forget: Callable[[str], str],
                  pool_volume: Callable[[str], libvirt.virStorageVol]) -> libvirt.virDomain:
    """A shut-off domain on the test driver whose disk and seed are volumes of default-pool, and which
    also has an installation ISO (a volume too) in a second CD-ROM."""
    name = forget(unique("seeded"))
    disk, iso, seed_vol = (pool_volume(f"{name}{suffix}") for suffix in ("-vda.img", "-install.iso", "-cidata.iso"))
    cdrom = (f"<disk type='file' device='cdrom'><source file='{iso.path()}'/><target dev='hdb' bus='ide'/>"
             "<readonly/></disk>")
    xml = domain_xml(name).replace(f"/guest/{name}.img", disk.path()).replace("</devices>", cdrom + "</devices>")
    return test_conn.defineXMLFlags(seed.attach(xml, seed_vol.path()), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def test_libvirt_keeps_the_seed_and_its_record(seeded_domain):
    xml = seeded_domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    (path,) = seed.seed_paths(xml)
    assert path.endswith("-cidata.iso")
    assert [d.find("source").get("file") for d in seed_disks(xml) if d.find("target").get("dev") == "hdc"] == [path]


def test_a_template_made_from_a_seeded_domain_gives_its_clones_no_seed(test_conn, seeded_domain):
    uuid = seeded_domain.UUIDString()
    (path,) = seed.seed_paths(seeded_domain.XMLDesc(0))
    template_xml, _disks = clone.make_template(test_conn, uuid)
    assert seed.seed_paths(template_xml) == []
    assert path not in template_xml
    assert len(seed_disks(template_xml)) == 1  # the installation ISO stays
    clone_xml = clone.clone_domain_xml(template_xml, "c", str(uuidlib.uuid4()),
                                       {"hda": "/default-pool/c-hda.qcow2"})
    assert path not in clone_xml
    # The template's own definition keeps its seed, so that removing the template deletes it.
    assert seed.seed_paths(seeded_domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == [path]


def test_removing_a_domain_deletes_its_seed_but_not_an_installation_iso(test_conn, seeded_domain):
    pool = test_conn.storagePoolLookupByName("default-pool")
    name = seeded_domain.name()
    deleted = domains.remove(test_conn, seeded_domain.UUIDString())
    assert sorted(deleted) == sorted(f"/default-pool/{name}{s}" for s in ("-vda.img", "-cidata.iso"))
    assert f"{name}-install.iso" in pool.listVolumes()
    assert f"{name}-cidata.iso" not in pool.listVolumes()


def test_detach_takes_the_seed_off_the_definition_and_deletes_its_volume(test_conn, seeded_domain):
    pool = test_conn.storagePoolLookupByName("default-pool")
    name = seeded_domain.name()
    assert seed.detach(test_conn, seeded_domain.UUIDString()) == f"/default-pool/{name}-cidata.iso"
    xml = seeded_domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert seed.seed_paths(xml) == [] and "cidata" not in xml
    assert f"{name}-cidata.iso" not in pool.listVolumes() and f"{name}-install.iso" in pool.listVolumes()
    assert seed.detach(test_conn, seeded_domain.UUIDString()) is None


def test_upload_seed_refuses_a_name_that_is_taken(test_conn, pool_volume):
    taken = pool_volume(seed.seed_volume_name(unique("taken")))
    with pytest.raises(VirtError, match="already has a volume") as caught:
        seed.upload_seed(test_conn, "default-pool", taken.name(), b"x")
    assert caught.value.kind == errors.CONFLICT
