"""The libvirt layer of snapshots (webvirt.virt.snapshots): the tree, names, and which kind a new one is."""

from __future__ import annotations

import pytest

from tests.snapshots.conftest import EFI_FIRMWARE, PFLASH
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshots import EXTERNAL, INTERNAL, SnapshotInfo, check_name, descendants, plan, tree_order

pytestmark = pytest.mark.django_db


def info(name: str, parent: str | None = None, created: int = 0) -> SnapshotInfo:
    return SnapshotInfo(name=name, parent=parent, description="", created=created, state="shutoff",
                        kind=INTERNAL, memory=False, current=False, size_bytes=None)


# The tree ---------------------------------------------------------------------------------------

def test_parents_come_before_their_children_and_siblings_oldest_first():
    # Listed the way libvirt may list them: in no particular order.
    infos = [info("c2", "b", 40), info("b", "a", 20), info("a", None, 10), info("c1", "b", 30),
             info("late-root", None, 50), info("b2", "a", 25)]
    ordered = tree_order(infos)
    assert [(i.name, i.depth) for i in ordered] == [("a", 0), ("b", 1), ("c1", 2), ("c2", 2), ("b2", 1),
                                                     ("late-root", 0)]


def test_siblings_taken_in_the_same_second_are_ordered_by_name():
    # libvirt's creationTime counts whole seconds.
    ordered = tree_order([info("z", "root", 5), info("m", "root", 5), info("root", None, 1)])
    assert [i.name for i in ordered] == ["root", "m", "z"]


def test_a_snapshot_whose_parent_is_gone_counts_as_a_root():
    ordered = tree_order([info("child", "deleted-with-virsh", 20), info("root", None, 10)])
    assert [(i.name, i.depth) for i in ordered] == [("root", 0), ("child", 0)]


def test_descendants_are_the_whole_branch_below_in_tree_order_and_nothing_else():
    infos = [info("a", None, 1), info("b", "a", 2), info("c", "b", 3), info("d", "a", 4), info("e", None, 5),
             info("f", "e", 6)]
    assert descendants(infos, "a") == ["b", "c", "d"]
    assert descendants(infos, "b") == ["c"]
    assert descendants(infos, "f") == []


# Names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["before-update", "v1.2_final", "2026-12-02_11.30.54", "a" * 63])
def test_names_of_letters_digits_dots_underscores_and_dashes_are_usable(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-starts-with-a-dash", "has space", "slash/in/it", "quote'", "a" * 64,
                                  "été", "../escape"])
def test_other_names_are_refused_with_a_sentence_that_says_what_is_usable(name):
    with pytest.raises(VirtError) as refused:
        check_name(name)
    assert refused.value.kind == errors.INVALID
    assert "is not a usable snapshot name: use up to 63 letters, digits" in refused.value.message


# Which kind -------------------------------------------------------------------------------------

def test_auto_picks_internal_for_a_shut_off_qcow2_bios_domain(snap_domain, test_conn):
    row = snap_domain()
    chosen = plan(test_conn, row.uuid, "auto", memory=False)
    assert (chosen.kind, chosen.memory) == (INTERNAL, False)
    assert chosen.reason == "every disk is qcow2 and the firmware is BIOS"
    assert chosen.extra_bytes == 0  # nothing new on disk but what the snapshot writes into the qcow2
    assert list(chosen.disks) == ["vda"]


def test_auto_with_memory_on_a_running_domain_is_internal_and_counts_the_memory(snap_domain, test_conn):
    row = snap_domain(start=True, memory_mib=256)
    chosen = plan(test_conn, row.uuid, "auto", memory=True)
    assert (chosen.kind, chosen.memory) == (INTERNAL, True)
    assert chosen.extra_bytes == 256 * 1024**2


def test_auto_picks_external_for_a_raw_disk_and_says_why(snap_domain, test_conn):
    row = snap_domain(disk_format="raw")
    chosen = plan(test_conn, row.uuid, "auto", memory=False)
    assert chosen.kind == EXTERNAL
    assert chosen.reason == "disk vda is not qcow2, and only qcow2 holds internal snapshots"
    # An overlay can grow to its disk's size (the test driver says every disk holds about 1 TiB).
    assert chosen.extra_bytes == test_conn.lookupByUUIDString(row.uuid).blockInfo("vda", 0)[0] > 1000 * 1024**3


def test_auto_picks_external_for_a_running_domain_without_its_memory(snap_domain, test_conn):
    row = snap_domain(start=True)
    chosen = plan(test_conn, row.uuid, "auto", memory=False)
    assert chosen.kind == EXTERNAL
    assert "you left memory out" in chosen.reason


@pytest.mark.parametrize("os", [EFI_FIRMWARE, PFLASH], ids=["firmware-efi", "pflash-and-nvram"])
def test_a_uefi_domain_gets_external_snapshots_and_is_refused_internal_ones(snap_domain, test_conn, os):
    row = snap_domain(os=os)
    assert plan(test_conn, row.uuid, "auto", memory=False).kind == EXTERNAL
    with pytest.raises(VirtError) as refused:
        plan(test_conn, row.uuid, "internal", memory=False)
    assert refused.value.kind == errors.INVALID
    assert refused.value.message == (f"{row.name} cannot have internal snapshots: it boots with UEFI, whose "
                                     "variables an internal snapshot does not save.")


def test_an_unknown_kind_is_refused(snap_domain, test_conn):
    with pytest.raises(VirtError) as refused:
        plan(test_conn, snap_domain().uuid, "both", memory=False)
    assert refused.value.message == "'both' is not a snapshot kind; use auto, internal or external."
