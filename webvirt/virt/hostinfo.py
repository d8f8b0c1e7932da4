"""What a host is and offers: versions, CPU, memory, and the guest types its hypervisor supports."""

from __future__ import annotations

from typing import Any

import libvirt
from lxml import etree

MIB = 1024 * 1024


def free_memory(conn: libvirt.virConnect) -> int:
    """The host's free memory in bytes: the one read of it (placing clones, warm pools, waves, migration).

    libvirt's test driver keeps its cells' free memory in KiB and answers their sum as if it were
    bytes (its 3 GiB host says 3 MiB), so its figure is scaled here; every real driver answers bytes.
    """
    free = int(conn.getFreeMemory())
    return free * 1024 if conn.getType().upper() == "TEST" else free


def free_memory_mib(conn: libvirt.virConnect) -> int:
    return free_memory(conn) // MIB


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def host_facts(conn: libvirt.virConnect) -> dict[str, Any]:
    """Facts for the host page, read live. All values are JSON-serialisable."""
    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
    caps = etree.fromstring(conn.getCapabilities().encode())
    cpu_model = caps.findtext("./host/cpu/model") or model
    try:
        free_mib: int | None = free_memory_mib(conn)
    except libvirt.libvirtError:
        free_mib = None
    guests: dict[str | None, set[str | None]] = {}
    for guest in caps.findall("./guest"):
        arch = guest.find("./arch")
        if arch is None:
            continue
        kinds = {d.get("type") for d in arch.findall("./domain")}
        entry = guests.setdefault(arch.get("name"), set())
        entry.update(k for k in kinds if k)
    try:
        hv_version = _version(conn.getVersion())
    except libvirt.libvirtError:
        hv_version = ""
    return {
        "hostname": conn.getHostname(),
        "libvirt_version": _version(conn.getLibVersion()),
        "hypervisor": conn.getType(),
        "hypervisor_version": hv_version,
        "arch": model,
        "cpu_model": cpu_model,
        "cpus": cpus,
        "cpu_mhz": mhz,
        "topology": {"nodes": nodes, "sockets": sockets, "cores": cores, "threads": threads},
        "memory_mib": memory_mib,
        "memory_free_mib": free_mib,
        "guest_arches": {arch: sorted(kinds) for arch, kinds in sorted(guests.items())},
        "kvm": any("kvm" in kinds for kinds in guests.values()),
    }
