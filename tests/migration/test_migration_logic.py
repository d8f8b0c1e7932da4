"""The parts of webvirt.virt.migration that need no host: the progress estimate, the stall policy, how a
migration is asked of libvirt (flags and parameters) and the destination's definition."""

from __future__ import annotations

import libvirt
import pytest
from lxml import etree

from webvirt.virt.migration import (
    COPY_ALL,
    COPY_INC,
    SHARED,
    DiskMove,
    Estimate,
    Plan,
    Progress,
    StallPolicy,
    dest_xml,
    flags_and_params,
)

MIB = 1024 * 1024
STEP = Estimate.STEP

XML = """<domain type='qemu'>
  <name>web1</name>
  <uuid>5f0c3c4e-1d2b-4d8e-9a53-4c4a1c1f0a01</uuid>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/srv/a/pool/web1.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='/srv/a/pool/base.qcow2'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='data' volume='web1-data.img'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/isos/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/shared/cluster.img'/>
      <target dev='vdc' bus='virtio'/>
      <shareable/>
    </disk>
  </devices>
</domain>"""


def plan(storage: str, live: bool = True) -> Plan:
    disks = [DiskMove(target="vda", source="/srv/a/pool/web1.qcow2", pool="mig-pool", capacity=10 * MIB,
                      allocation=MIB, backing="/srv/b/pool/base.qcow2" if storage == COPY_INC else "",
                      dest="/srv/b/pool/web1.qcow2"),
             DiskMove(target="vdb", source="/srv/a/data/web1-data.img", pool="data", capacity=20 * MIB,
                      allocation=20 * MIB, dest="/srv/b/data/web1-data.img")]
    if storage == SHARED:
        for disk in disks:
            disk.dest = disk.source
    return Plan(storage=storage, live=live, disks=disks)


def disks(xml: str) -> dict[str, dict]:
    """target -> the disk's type, driver type, source (file or pool/volume) and whether it has a backingStore."""
    found: dict[str, dict] = {}
    for disk in etree.fromstring(xml.encode()).findall("./devices/disk"):
        source = disk.find("./source")
        found[str(disk.xpath("string(./target/@dev)"))] = {
            "type": disk.get("type"), "driver": disk.xpath("string(./driver/@type)"),
            "cache": disk.xpath("string(./driver/@cache)") or None,
            "source": dict(source.attrib) if source is not None else {},
            "backing": disk.find("./backingStore") is not None}
    return found


# Estimate ------------------------------------------------------------------------------------------

def test_the_estimate_moves_smoothly_between_libvirts_steps_and_never_past_the_next_one() -> None:
    est, total = Estimate(), 100 * STEP
    assert est.fraction(10.0, 0, total) == 0.0
    assert est.fraction(11.0, STEP, total) == pytest.approx(0.01)  # the first step: no rate yet
    assert est.fraction(11.5, STEP, total) == pytest.approx(0.01)
    assert est.fraction(12.0, 2 * STEP, total) == pytest.approx(0.02)  # one step a second: the rate
    # Between libvirt's figures it goes on at that rate...
    seen = [est.fraction(12.0 + t, 2 * STEP, total) for t in (0.25, 0.5, 0.75)]
    assert seen == pytest.approx([0.0225, 0.025, 0.0275])
    # ... but not past the next step, however long libvirt takes to report it.
    assert est.fraction(13.5, 2 * STEP, total) == pytest.approx(0.03)
    assert est.fraction(60.0, 2 * STEP, total) == pytest.approx(0.03)
    # A new figure: on from there (the rate is now a step per 48 s).
    assert est.fraction(60.0, 3 * STEP, total) == pytest.approx(0.03)
    assert est.fraction(84.0, 3 * STEP, total) == pytest.approx(0.035)


def test_the_estimate_never_passes_one_and_knows_nothing_without_a_total() -> None:
    est = Estimate()
    assert est.fraction(1.0, 0, 0) == 0.0
    est.fraction(1.0, STEP, 3 * STEP)
    est.fraction(2.0, 2 * STEP, 3 * STEP)
    assert est.fraction(2.9, 2 * STEP, 3 * STEP) == pytest.approx(2.9 / 3)
    assert est.fraction(10.0, 2 * STEP, 3 * STEP) == 1.0
    assert est.fraction(10.0, 3 * STEP, 3 * STEP) == 1.0
    assert est.fraction(99.0, 3 * STEP, 3 * STEP) == 1.0


def test_the_estimate_never_falls_below_what_libvirt_reported() -> None:
    """Memory the guest dirties again makes libvirt's "data moved" go down; the estimate must not then run
    backwards below libvirt's figure (down to 0 on the job's progress bar)."""
    est, total = Estimate(), 10 * STEP
    est.fraction(1.0, 4 * STEP, total)
    est.fraction(2.0, 5 * STEP, total)
    assert est.fraction(3.0, 4 * STEP, total) == pytest.approx(0.4)  # went down by a step
    for now in (3.5, 5.0, 30.0):
        assert est.fraction(now, 4 * STEP, total) >= 0.4


# StallPolicy ---------------------------------------------------------------------------------------

def test_a_stall_raises_the_downtime_step_by_step_up_to_the_limit_then_gives_up() -> None:
    stall = StallPolicy(300, limit_ms=2000, window_s=5.0)
    assert stall.observe(0.0, 1000 * MIB) == ""
    assert stall.observe(4.9, 990 * MIB) == ""  # less than 5 % less: no progress, but the window is not over
    assert (stall.observe(5.0, 990 * MIB), stall.downtime_ms) == ("raise", 600)
    assert stall.observe(9.9, 1000 * MIB) == ""
    assert (stall.observe(10.0, 1000 * MIB), stall.downtime_ms) == ("raise", 1200)
    assert (stall.observe(15.0, 980 * MIB), stall.downtime_ms) == ("raise", 2000)  # capped at the limit
    assert stall.observe(19.0, 980 * MIB) == ""
    assert (stall.observe(20.0, 980 * MIB), stall.downtime_ms) == ("abort", 2000)


def test_progress_starts_the_stall_window_again() -> None:
    stall = StallPolicy(300, limit_ms=2000, window_s=5.0)
    stall.observe(0.0, 1000 * MIB)
    assert stall.observe(5.0, 1000 * MIB) == "raise"
    assert stall.observe(8.0, 900 * MIB) == ""  # shrank by 10 %: a new best, a new window
    assert stall.observe(12.9, 900 * MIB) == ""
    assert (stall.observe(13.0, 899 * MIB), stall.downtime_ms) == ("raise", 1200)  # the downtime is kept
    # Steady progress never stalls.
    steady = StallPolicy(300, window_s=5.0)
    assert {steady.observe(float(t), (1000 - 60 * t) * MIB) for t in range(0, 16)} == {""}
    assert steady.downtime_ms == 300


def test_a_downtime_already_at_the_limit_gives_up_at_the_first_stall() -> None:
    stall = StallPolicy(2000, limit_ms=2000, window_s=1.0)
    stall.observe(0.0, 100 * MIB)
    assert stall.observe(1.0, 100 * MIB) == "abort"


# flags_and_params ----------------------------------------------------------------------------------

ALWAYS = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
COPIES = libvirt.VIR_MIGRATE_NON_SHARED_DISK | libvirt.VIR_MIGRATE_NON_SHARED_INC


def test_shared_storage_moves_memory_only_and_says_the_storage_is_shared() -> None:
    flags, params = flags_and_params(plan(SHARED), "tcp://10.0.0.5", None, XML)
    assert flags == ALWAYS | libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.0.0.5",
                      libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "10.0.0.5"}


@pytest.mark.parametrize(("storage", "flag"), [(COPY_ALL, libvirt.VIR_MIGRATE_NON_SHARED_DISK),
                                               (COPY_INC, libvirt.VIR_MIGRATE_NON_SHARED_INC)])
def test_copies_name_their_disks_and_the_destinations_paths(storage: str, flag: int) -> None:
    moving = plan(storage)
    flags, params = flags_and_params(moving, "tcp://10.0.0.5:49152", 64, XML)
    assert flags == ALWAYS | libvirt.VIR_MIGRATE_LIVE | flag
    assert not flags & libvirt.VIR_MIGRATE_UNSAFE and flags & COPIES == flag
    assert params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda", "vdb"]
    assert params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 64
    assert params[libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://10.0.0.5:49152"
    assert params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] == "10.0.0.5"  # QEMU's and the NBD server's
    # The running domain and its persistent definition: the same XML, with the destination's paths.
    assert params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] == params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML]
    assert params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] == dest_xml(XML, moving)
    found = disks(params[libvirt.VIR_MIGRATE_PARAM_DEST_XML])
    assert (found["vda"]["source"], found["vdb"]["source"]) == ({"file": "/srv/b/pool/web1.qcow2"},
                                                                {"file": "/srv/b/data/web1-data.img"})
    assert set(params) == {libvirt.VIR_MIGRATE_PARAM_URI, libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
                           libvirt.VIR_MIGRATE_PARAM_BANDWIDTH, libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS,
                           libvirt.VIR_MIGRATE_PARAM_DEST_XML, libvirt.VIR_MIGRATE_PARAM_PERSIST_XML}


@pytest.mark.parametrize(("uri", "listen"), [
    ("tcp://10.0.0.5", "10.0.0.5"), ("tcp://10.0.0.5:49152", "10.0.0.5"), ("tcp://[fd00::5]:49152", "fd00::5"),
    ("tcp://hostb.example.org", None), ("tcp://hostb:49152", None)])
def test_the_destination_listens_on_an_ip_address_given_but_not_on_a_name(uri: str, listen: str | None) -> None:
    for storage in (SHARED, COPY_ALL):
        _, params = flags_and_params(plan(storage), uri, None, XML)
        assert params[libvirt.VIR_MIGRATE_PARAM_URI] == uri
        assert params.get(libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS) == listen


def test_without_a_migration_address_libvirt_chooses() -> None:
    flags, params = flags_and_params(plan(SHARED), "", None, XML)
    assert params == {} and flags & libvirt.VIR_MIGRATE_LIVE


def test_offline_moves_the_definition_only() -> None:
    flags, params = flags_and_params(plan(SHARED, live=False), "tcp://10.0.0.5", None, XML)
    assert flags == ALWAYS | libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_UNSAFE
    assert params == {}  # no migration stream, so neither its address nor a listen address


# dest_xml ------------------------------------------------------------------------------------------

def test_the_destinations_definition_has_the_moved_disks_at_their_new_paths_and_nothing_else_changed() -> None:
    before = disks(XML)
    after = disks(dest_xml(XML, plan(COPY_INC)))
    # A linked clone's overlay: the new path; libvirt reads the backing chain from the new file.
    assert after["vda"] == {"type": "file", "driver": "qcow2", "cache": "none",
                            "source": {"file": "/srv/b/pool/web1.qcow2"}, "backing": False}
    # A pool volume becomes the destination's file (qcow2: webvirt makes the destination's volumes so).
    assert after["vdb"] == {"type": "file", "driver": "qcow2", "cache": None,
                            "source": {"file": "/srv/b/data/web1-data.img"}, "backing": False}
    # A CD-ROM and a shareable disk are no copy's business.
    assert (after["sda"], after["vdc"]) == (before["sda"], before["vdc"])
    doc = etree.fromstring(dest_xml(XML, plan(COPY_INC)).encode())
    assert (doc.findtext("./name"), doc.findtext("./uuid"), doc.findtext("./memory")) == (
        "web1", "5f0c3c4e-1d2b-4d8e-9a53-4c4a1c1f0a01", "128")


def test_a_disk_outside_the_plan_keeps_its_source() -> None:
    only_vda = plan(COPY_ALL)
    only_vda.disks = only_vda.disks[:1]
    after = disks(dest_xml(XML, only_vda))
    assert after["vda"]["source"] == {"file": "/srv/b/pool/web1.qcow2"}
    assert after["vdb"] == disks(XML)["vdb"]


def test_the_stall_policy_waits_for_the_memory_passes_that_chase_changes() -> None:
    # While disks copy, while the destination starts (nothing reported yet) and during the first memory
    # pass, "the data left did not shrink" says nothing: a slow link must not be taken for a stall.
    from webvirt.migration.jobs import _apply_stall

    stall = StallPolicy(300, window_s=0.0)
    for early in (Progress(0.1, 64 * MIB, 128 * MIB, 1000, 64 * MIB, 0, iteration=1),
                  Progress(0.5, 0, 0, 1000, 0, 0, iteration=0),
                  Progress(0.3, 32 * MIB, 96 * MIB, 1000, 0, 32 * MIB, iteration=2)):
        for _ in range(10):
            _apply_stall(None, None, None, stall, early)  # type: ignore[arg-type]  # untouched so early
    assert stall.downtime_ms == 300 and stall.best is None
