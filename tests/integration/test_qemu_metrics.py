"""Usage figures of a real guest, on libvirtd with QEMU (qemu:///system), as the real watcher collects them.

The whole stack runs for real (uvicorn and the event watcher from `live_stack`), with a usage pass
every INTERVAL seconds (WEBVIRT_METRICS_INTERVAL in the live processes' environment). A tiny guest is
made busy with a loop in its serial shell: its CPU figure must climb above 50% within two passes, and
fall back near 0 within two passes after the loop is killed. Reading and writing its disk must show
in the disk figures, and its memory must be there on every sample.

A pass runs on the step's boundary and its sample carries `t`, the start of that step, so the sample
at `t` holds the rates between the passes at `t - INTERVAL` and `t`: "within two passes" of a moment
`s` means among the first two samples with `t > s` (the first covers the step in which `s` fell, the
second a whole step after it).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.guest.guest import make_overlay, tiny_domain_xml
from tests.guest.serial import SerialShell
from tests.integration.conftest import pool_dir

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

INTERVAL = 2  # seconds between passes of the live watcher in these tests (the setting's minimum)
BOOT_TIMEOUT = 60.0
BUSY_PERCENT = 50.0
IDLE_PERCENT = 15.0
# Two passes, then time for the pass's rows to be written and read back (a loaded machine is slow).
TWO_PASSES = 2 * INTERVAL + 8.0


@dataclass
class Guest:
    pk: int
    name: str
    dom: libvirt.virDomain
    shell: SerialShell


@pytest.fixture
def fast_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass every INTERVAL s in the processes live_stack starts (tests/live.py hands them os.environ)."""
    monkeypatch.setenv("WEBVIRT_METRICS_INTERVAL", str(INTERVAL))


@pytest.fixture
def metrics_stack(fast_metrics, live_stack):  # type: ignore[no-untyped-def]
    """live_stack, started after fast_metrics has set the interval."""
    return live_stack


def boot_tiny_guest(api, conn: libvirt.virConnect, host_id: int, pool: libvirt.virStoragePool, image: Path,  # type: ignore[no-untyped-def]
                    names: list[str], prefix: str = "wvm") -> Guest:
    """Define a tiny guest on an overlay in `pool` through the API (anything with DRF's test client's
    `post(path, data, format=)`), start it through the API, and wait until its shell answers."""
    name = f"{prefix}-{uuidlib.uuid4().hex[:8]}"
    overlay = make_overlay(image, pool_dir(pool) / f"{name}.qcow2")
    pool.refresh(0)
    names.append(name)
    response = api.post("/api/v1/domains/", {"host": host_id, "xml": tiny_domain_xml(name, str(overlay), vnc=False)},
                        format="json")
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    response = api.post(f"/api/v1/domains/{pk}/start/")
    assert response.status_code == 200, response.json()
    dom = conn.lookupByName(name)
    shell = SerialShell(dom)
    try:
        seconds = shell.wait_for_shell(BOOT_TIMEOUT)
    except BaseException:
        shell.close()
        raise
    print(f"{name}: the shell answered {seconds:.1f} s after the serial port was opened")
    return Guest(pk, name, dom, shell)


@pytest.fixture
def guest(api, qemu_conn, qemu_host, scratch_pool, guest_names, guest_image) -> Iterator[Guest]:  # type: ignore[no-untyped-def]
    running = boot_tiny_guest(api, qemu_conn, qemu_host.pk, scratch_pool, guest_image, guest_names)
    yield running
    running.shell.close()


def samples(api, pk: int) -> dict[int, dict[str, float | None]]:  # type: ignore[no-untyped-def]
    """The domain's samples of the last hour, as the API answers them: {t: {series: average}}."""
    response = api.get(f"/api/v1/domains/{pk}/metrics/?range=1h")
    assert response.status_code == 200, response.json()
    by_time: dict[int, dict[str, float | None]] = {}
    for name, points in response.json()["series"].items():
        for t, average, _maximum in points:
            by_time.setdefault(int(t), {})[name] = average
    return dict(sorted(by_time.items()))


def wait_for_samples(api, pk: int, after: float, count: int, timeout: float) -> list[tuple[int, dict]]:  # type: ignore[no-untyped-def]
    """The first `count` samples with t > `after`, waiting up to `timeout` s for them."""
    deadline = time.monotonic() + timeout
    while True:
        later = [(t, v) for t, v in samples(api, pk).items() if t > after]
        if len(later) >= count:
            return later[:count]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(later)} samples after {after:.1f} within {timeout:g} s, not {count}: "
                                 f"{later}")
        time.sleep(0.25)


def row(api, pk: int) -> dict:  # type: ignore[no-untyped-def]
    response = api.get(f"/api/v1/domains/{pk}/")
    assert response.status_code == 200, response.json()
    return response.json()


def show(label: str, got: list[tuple[int, dict]]) -> None:
    for t, v in got:
        print(f"{label} t={t} cpu={v.get('cpu_percent')} cpu_host={v.get('cpu_host_percent')} "
              f"mem={v.get('memory_mib')} balloon={v.get('balloon_mib')} rd={v.get('disk_read_bps')} "
              f"wr={v.get('disk_write_bps')} rd_iops={v.get('disk_read_iops')} wr_iops={v.get('disk_write_iops')}")


def test_a_busy_guest_shows_in_its_cpu_figures_and_its_disk_and_memory_are_there(  # type: ignore[no-untyped-def]
        api, metrics_stack, guest: Guest) -> None:
    # The watcher takes the host, resynchronises it and collects: two samples, so rates exist.
    first = wait_for_samples(api, guest.pk, 0, 2, 60)
    show("idle", first)
    for _t, values in first:
        assert values["memory_mib"] and 0 < values["memory_mib"] < 2048, values
        assert values["balloon_mib"] == 128, values  # its currentMemory
    assert first[1][1]["cpu_percent"] is not None and first[1][1]["disk_read_bps"] is not None, first

    # Disk: read 16 MiB of its disk past the guest's caches, write 1 MiB to the sectors nothing uses.
    started = time.time()
    guest.shell.run("flush-disk && dd if=/dev/vda of=/dev/null bs=64k count=256 2>/dev/null")
    guest.shell.run("dd if=/dev/zero of=/dev/vda bs=64k seek=512 count=16 conv=fsync 2>/dev/null")
    io = wait_for_samples(api, guest.pk, started, 2, TWO_PASSES)
    show("disk", io)
    assert max(v["disk_read_bps"] or 0 for _t, v in io) > 1024 * 1024, io
    assert max(v["disk_read_iops"] or 0 for _t, v in io) > 0, io
    assert max(v["disk_write_bps"] or 0 for _t, v in io) > 64 * 1024, io
    assert max(v["disk_write_iops"] or 0 for _t, v in io) > 0, io
    assert all(v["net_rx_bps"] is None for _t, v in io), "the tiny guest has no network interface"

    # Busy: a loop in its shell keeps its one vCPU at 100%.
    pid = guest.shell.run("while :; do :; done & echo $!").strip()
    busy_since = time.time()
    assert pid.isdigit(), pid
    try:
        busy = wait_for_samples(api, guest.pk, busy_since, 2, TWO_PASSES)
        show("busy", busy)
        assert max(v["cpu_percent"] or 0 for _t, v in busy) > BUSY_PERCENT, (busy, _load())
        # The list's column holds the latest figure.
        deadline = time.monotonic() + INTERVAL + 5
        while (cpu := row(api, guest.pk)["cpu_percent"]) is None or cpu <= BUSY_PERCENT:
            assert time.monotonic() < deadline, (cpu, _load())
            time.sleep(0.25)
        print(f"busy: the list shows {cpu:.1f}% (load {_load()})")
        found = api.get(f"/api/v1/domains/?search={guest.name}").json()["results"]
        assert len(found) == 1 and found[0]["cpu_percent"] > BUSY_PERCENT, found
        assert found[0]["memory_used_mib"] and found[0]["memory_used_mib"] > 0, found
    finally:
        guest.shell.run(f"kill {pid}")
    idle_since = time.time()

    idle = wait_for_samples(api, guest.pk, idle_since, 2, TWO_PASSES)
    show("idle again", idle)
    # The first sample after the kill may still hold part of the busy step; the second is a whole idle one.
    assert idle[1][1]["cpu_percent"] is not None and idle[1][1]["cpu_percent"] < IDLE_PERCENT, (idle, _load())
    deadline = time.monotonic() + INTERVAL + 5
    while (cpu := row(api, guest.pk)["cpu_percent"]) is None or cpu >= IDLE_PERCENT:
        assert time.monotonic() < deadline, cpu
        time.sleep(0.25)
    for _t, values in busy + idle:
        assert values["memory_mib"] and values["balloon_mib"] == 128, values
        assert values["disk_read_bps"] is not None and values["disk_write_bps"] is not None, values
        assert values["cpu_host_percent"] is not None and values["cpu_host_percent"] <= values["cpu_percent"], values

    # The host's own figures are collected too.
    host_id = row(api, guest.pk)["host"]
    answer = api.get(f"/api/v1/hosts/{host_id}/metrics/?range=1h").json()
    assert answer["series"]["cpu_percent"] and answer["series"]["memory_total_mib"], answer
    assert any(d["id"] == guest.pk for d in answer["top"]), answer["top"]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
