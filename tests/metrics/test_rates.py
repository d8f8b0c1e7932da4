"""Rates between two readings (webvirt.virt.stats): pure functions, fed with synthetic readings (their
input type), and the readings the test driver gives for the shape of a real pass.

libvirt's test driver answers getAllDomainStats with `state.*` only and has no node memory statistics,
so every rate below comes from DomainReading/HostReading objects built here.
"""

from __future__ import annotations

import pytest

from webvirt.virt import stats
from webvirt.virt.stats import DOMAIN_SERIES, DomainReading, HostReading, domain_rates, host_rates

MIB = 1024 * 1024
RATE_SERIES = [s for s in DOMAIN_SERIES if s not in ("memory_mib", "balloon_mib")]


def reading(at: float, vcpus: int = 1, memory_kib: int | None = 512 * 1024, balloon_kib: int | None = 1024 * 1024,
            **counters: int) -> DomainReading:
    return DomainReading(uuid="u-1", at=at, vcpus=vcpus, memory_kib=memory_kib, balloon_kib=balloon_kib,
                         counters=dict(counters))


ZERO = dict(cpu_ns=0, rd_bytes=0, wr_bytes=0, rd_reqs=0, wr_reqs=0, rx_bytes=0, tx_bytes=0)


# Domains ----------------------------------------------------------------------------------------

def test_cpu_percent_is_of_the_domains_vcpus_and_of_the_hosts_cpus():
    before = reading(100.0, vcpus=2, cpu_ns=5_000_000_000)
    now = reading(110.0, vcpus=2, cpu_ns=8_000_000_000)  # 3 s of CPU time in 10 s: 0.3 of one CPU

    rates = domain_rates(before, now, host_cpus=8)

    assert rates["cpu_percent"] == pytest.approx(15.0)  # 0.3 of 2 vCPUs
    assert rates["cpu_host_percent"] == pytest.approx(3.75)  # 0.3 of 8 host CPUs


def test_cpu_percent_never_goes_above_100():
    rates = domain_rates(reading(0.0, cpu_ns=0), reading(10.0, cpu_ns=25_000_000_000), host_cpus=2)
    assert rates["cpu_percent"] == 100.0  # 2.5 CPUs busy on a 1-vCPU guest: clock skew, not 250 %
    assert rates["cpu_host_percent"] == 100.0


def test_disk_and_network_bytes_per_second_and_iops():
    before = reading(50.0, **ZERO)
    now = reading(54.0, cpu_ns=0, rd_bytes=40 * MIB, wr_bytes=8 * MIB, rd_reqs=400, wr_reqs=10,
                  rx_bytes=4000, tx_bytes=1000)

    rates = domain_rates(before, now, host_cpus=4)

    assert rates["disk_read_bps"] == pytest.approx(10 * MIB)
    assert rates["disk_write_bps"] == pytest.approx(2 * MIB)
    assert rates["disk_read_iops"] == pytest.approx(100.0)
    assert rates["disk_write_iops"] == pytest.approx(2.5)
    assert rates["net_rx_bps"] == pytest.approx(1000.0)
    assert rates["net_tx_bps"] == pytest.approx(250.0)
    assert rates["cpu_percent"] == 0.0  # an idle guest is 0 %, not a gap


def test_memory_is_the_current_reading_in_mib_even_without_rates():
    rates = domain_rates(None, reading(1.0, memory_kib=300 * 1024, balloon_kib=2048 * 1024), host_cpus=1)
    assert (rates["memory_mib"], rates["balloon_mib"]) == (300.0, 2048.0)
    unknown = domain_rates(None, reading(1.0, memory_kib=None, balloon_kib=None), host_cpus=1)
    assert unknown["memory_mib"] is None and unknown["balloon_mib"] is None


def test_the_first_reading_gives_no_rates():
    rates = domain_rates(None, reading(10.0, cpu_ns=10**12, rd_bytes=10**9), host_cpus=4)
    assert set(rates) == set(DOMAIN_SERIES)
    assert all(rates[s] is None for s in RATE_SERIES)
    assert rates["memory_mib"] == 512.0


@pytest.mark.parametrize("counter", stats.COUNTERS)
def test_a_counter_going_backwards_is_a_gap_never_a_negative_rate(counter):
    """The guest started again between the readings: every rate of this step is unknown."""
    before = reading(0.0, **{k: 10**9 for k in stats.COUNTERS})
    now = reading(10.0, **{k: 2 * 10**9 for k in stats.COUNTERS})
    now.counters[counter] = 5  # this one started again from zero

    rates = domain_rates(before, now, host_cpus=4)

    assert all(rates[s] is None for s in RATE_SERIES), rates
    assert rates["memory_mib"] == 512.0  # not a rate: still known
    # The next step, from the restarted counters, has rates again.
    later = reading(20.0, **{k: v + 10 for k, v in now.counters.items()})
    assert all(v is not None and v >= 0 for v in domain_rates(now, later, host_cpus=4).values())


def test_readings_out_of_order_or_at_the_same_moment_give_no_rates():
    before = reading(10.0, cpu_ns=0)
    assert domain_rates(before, reading(10.0, cpu_ns=10**9), host_cpus=1)["cpu_percent"] is None
    assert domain_rates(before, reading(5.0, cpu_ns=10**9), host_cpus=1)["cpu_percent"] is None


def test_a_counter_missing_from_either_reading_leaves_only_its_figure_out():
    before = reading(0.0, cpu_ns=0, rx_bytes=0)  # no disks in the first reading
    now = reading(10.0, cpu_ns=10**9, rx_bytes=100, rd_bytes=10**6)
    rates = domain_rates(before, now, host_cpus=1)
    assert rates["cpu_percent"] == pytest.approx(10.0)
    assert rates["net_rx_bps"] == pytest.approx(10.0)
    assert rates["disk_read_bps"] is None and rates["net_tx_bps"] is None


def test_a_qemu_style_stats_record_is_summed_over_disks_and_interfaces():
    record = {"state.state": 1, "cpu.time": 7_000_000_000, "vcpu.current": 4, "balloon.current": 2097152,
              "balloon.rss": 1048576, "block.count": 2, "block.0.rd.bytes": 100, "block.1.rd.bytes": 50,
              "block.0.wr.bytes": 10, "block.1.wr.bytes": 5, "block.0.rd.reqs": 3, "block.1.rd.reqs": 4,
              "block.0.wr.reqs": 1, "block.1.wr.reqs": 1, "net.count": 1, "net.0.rx.bytes": 9, "net.0.tx.bytes": 8}
    parsed = stats._domain_reading("u-2", record, 42.0)
    assert (parsed.uuid, parsed.at, parsed.vcpus, parsed.memory_kib, parsed.balloon_kib) == (
        "u-2", 42.0, 4, 1048576, 2097152)  # the resident memory, not the balloon size
    assert parsed.counters == {"cpu_ns": 7_000_000_000, "rd_bytes": 150, "wr_bytes": 15, "rd_reqs": 7,
                               "wr_reqs": 2, "rx_bytes": 9, "tx_bytes": 8}
    # A disk (a CD-ROM without media, say) lacking a counter: a sum over the others would jump when it
    # appears, so that counter is left out altogether.
    del record["block.1.rd.bytes"]
    assert "rd_bytes" not in stats._domain_reading("u-2", record, 43.0).counters


# Hosts ------------------------------------------------------------------------------------------

def host(at: float, busy: int | None, total: int | None, total_kib: int | None = None,
         free_kib: int | None = None) -> HostReading:
    return HostReading(at=at, cpu_busy_ns=busy, cpu_total_ns=total, cpus=8, memory_total_kib=total_kib,
                       memory_free_kib=free_kib)


def test_host_cpu_percent_is_busy_over_total_between_readings():
    rates = host_rates(host(0, 1_000, 10_000), host(10, 4_000, 22_000))
    assert rates["cpu_percent"] == pytest.approx(25.0)  # 3 000 busy of 12 000


def test_host_cpu_has_no_rate_on_the_first_reading_nor_across_a_reset():
    assert host_rates(None, host(0, 1_000, 10_000))["cpu_percent"] is None
    assert host_rates(host(0, 5_000, 50_000), host(10, 100, 1_000))["cpu_percent"] is None  # rebooted
    assert host_rates(host(0, 5_000, 50_000), host(10, 5_000, 50_000))["cpu_percent"] is None  # no time passed
    assert host_rates(host(0, None, None), host(10, 5_000, 50_000))["cpu_percent"] is None  # no CPU stats


def test_host_memory_is_total_less_free_buffers_and_cache():
    rates = host_rates(None, host(0, None, None, total_kib=8 * 1024 * 1024, free_kib=6 * 1024 * 1024))
    assert rates["memory_total_mib"] == 8192.0
    assert rates["memory_mib"] == 2048.0
    without = host_rates(None, host(0, None, None))
    assert without["memory_mib"] is None and without["memory_total_mib"] is None


# The shape of a real pass on the test driver ----------------------------------------------------

def test_read_domains_on_the_test_driver_gives_one_reading_per_running_domain(test_conn, make_test_domain):
    running = make_test_domain(start=True, vcpus=2)
    stopped = make_test_domain()

    readings = {r.uuid: r for r in stats.read_domains(test_conn, 1234.5)}

    assert running.UUIDString() in readings
    assert stopped.UUIDString() not in readings
    mine = readings[running.UUIDString()]
    assert mine.at == 1234.5 and mine.vcpus >= 1
    # The test driver reports state only: no counters, so two of its readings give no rates (gaps).
    assert mine.counters == {}
    later = stats.read_domains(test_conn, 1244.5)
    again = next(r for r in later if r.uuid == mine.uuid)
    assert all(v is None for v in domain_rates(mine, again, host_cpus=4).values())


def test_read_host_on_the_test_driver(test_conn):
    reading = stats.read_host(test_conn, 99.0)
    assert reading.at == 99.0
    assert reading.cpus == test_conn.getInfo()[2]
    assert reading.cpu_busy_ns is not None and reading.cpu_total_ns is not None
    assert 0 <= reading.cpu_busy_ns <= reading.cpu_total_ns
    assert reading.memory_total_kib is None  # the test driver has no node memory statistics
