"""Usage figures: libvirt's counters for every running domain of a host in one call, the host's own, and
the rates between two readings. No Django here.

One `getAllDomainStats` per host and pass, with only the groups the graphs need, and NOWAIT so that a
domain busy with a migration or a snapshot job answers with what it has instead of holding the pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libvirt

GROUPS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
          | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)
FLAGS = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT

# Counters that only grow while a domain runs; a smaller reading means it started again.
COUNTERS = ("cpu_ns", "rd_bytes", "wr_bytes", "rd_reqs", "wr_reqs", "rx_bytes", "tx_bytes")
DOMAIN_SERIES = ("cpu_percent", "cpu_host_percent", "memory_mib", "balloon_mib", "disk_read_bps", "disk_write_bps",
                 "disk_read_iops", "disk_write_iops", "net_rx_bps", "net_tx_bps")
HOST_SERIES = ("cpu_percent", "memory_mib", "memory_total_mib")
KIB_PER_MIB = 1024


@dataclass
class DomainReading:
    """One domain's counters at one moment (`at`: seconds on the collector's clock)."""

    uuid: str
    at: float
    vcpus: int = 1
    memory_kib: int | None = None  # what the domain uses on the host (QEMU's resident memory), else its size
    balloon_kib: int | None = None
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class HostReading:
    at: float
    cpu_busy_ns: int | None = None
    cpu_total_ns: int | None = None
    cpus: int = 1
    memory_total_kib: int | None = None
    memory_free_kib: int | None = None


def read_domains(conn: libvirt.virConnect, at: float) -> list[DomainReading]:
    return [_domain_reading(dom.UUIDString(), stats, at) for dom, stats in conn.getAllDomainStats(GROUPS, FLAGS)]


def _domain_reading(uuid: str, stats: dict[str, int], at: float) -> DomainReading:
    reading = DomainReading(uuid=uuid, at=at, vcpus=max(1, int(stats.get("vcpu.current", 1))),
                            balloon_kib=stats.get("balloon.current"))
    reading.memory_kib = stats.get("balloon.rss", stats.get("balloon.current"))
    counters = reading.counters
    if "cpu.time" in stats:
        counters["cpu_ns"] = int(stats["cpu.time"])
    for group, count_key, names in (("block", "block.count", ("rd.bytes", "wr.bytes", "rd.reqs", "wr.reqs")),
                                    ("net", "net.count", ("rx.bytes", "tx.bytes"))):
        for name in names:
            values = [stats.get(f"{group}.{i}.{name}") for i in range(int(stats.get(count_key, 0)))]
            if values and all(v is not None for v in values):
                counters[name.replace(".", "_")] = sum(int(v) for v in values if v is not None)
    return reading


def read_host(conn: libvirt.virConnect, at: float) -> HostReading:
    reading = HostReading(at=at, cpus=max(1, int(conn.getInfo()[2])))
    try:
        cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
        reading.cpu_busy_ns = int(cpu.get("kernel", 0)) + int(cpu.get("user", 0))
        reading.cpu_total_ns = reading.cpu_busy_ns + int(cpu.get("idle", 0)) + int(cpu.get("iowait", 0))
    except libvirt.libvirtError:
        pass  # a driver without it (some remote ones): no CPU graph for this host
    try:
        memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        reading.memory_total_kib = int(memory["total"])
        reading.memory_free_kib = sum(int(memory.get(k, 0)) for k in ("free", "buffers", "cached"))
    except (libvirt.libvirtError, KeyError):
        pass  # the test driver has none
    return reading


def domain_rates(before: DomainReading | None, now: DomainReading, host_cpus: int) -> dict[str, float | None]:
    """The figures for the graphs between two readings. Without a usable earlier reading (the first one,
    or a counter that went backwards because the guest started again) rates are None: a gap, never a
    negative spike."""
    values: dict[str, float | None] = dict.fromkeys(DOMAIN_SERIES)
    values["memory_mib"] = now.memory_kib / KIB_PER_MIB if now.memory_kib is not None else None
    values["balloon_mib"] = now.balloon_kib / KIB_PER_MIB if now.balloon_kib is not None else None
    if before is None or now.at <= before.at or restarted(before, now):
        return values
    seconds = now.at - before.at

    def rate(key: str) -> float | None:
        if key in now.counters and key in before.counters:
            return (now.counters[key] - before.counters[key]) / seconds
        return None

    cpu = rate("cpu_ns")
    if cpu is not None:
        values["cpu_percent"] = min(100.0, cpu / 1e9 / now.vcpus * 100)
        values["cpu_host_percent"] = min(100.0, cpu / 1e9 / host_cpus * 100)
    for series, key in (("disk_read_bps", "rd_bytes"), ("disk_write_bps", "wr_bytes"), ("disk_read_iops", "rd_reqs"),
                        ("disk_write_iops", "wr_reqs"), ("net_rx_bps", "rx_bytes"), ("net_tx_bps", "tx_bytes")):
        values[series] = rate(key)
    return values


def restarted(before: DomainReading, now: DomainReading) -> bool:
    return any(now.counters[k] < before.counters[k] for k in COUNTERS if k in now.counters and k in before.counters)


def host_rates(before: HostReading | None, now: HostReading) -> dict[str, float | None]:
    values: dict[str, float | None] = dict.fromkeys(HOST_SERIES)
    if now.memory_total_kib is not None and now.memory_free_kib is not None:
        values["memory_total_mib"] = now.memory_total_kib / KIB_PER_MIB
        values["memory_mib"] = (now.memory_total_kib - now.memory_free_kib) / KIB_PER_MIB
    if (before is not None and None not in (before.cpu_busy_ns, before.cpu_total_ns, now.cpu_busy_ns,
                                            now.cpu_total_ns)):
        busy = (now.cpu_busy_ns or 0) - (before.cpu_busy_ns or 0)
        total = (now.cpu_total_ns or 0) - (before.cpu_total_ns or 0)
        if total > 0 and busy >= 0:
            values["cpu_percent"] = min(100.0, 100 * busy / total)
    return values
