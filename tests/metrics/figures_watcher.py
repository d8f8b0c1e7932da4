"""The event watcher (`manage.py watch`) on a driver that reports usage figures.

libvirt's test driver answers getAllDomainStats with `state.*` only, and a pass stores nothing for a
domain without figures, so the live tests run the real watcher with one change: each reading the test
driver gives also carries a CPU counter growing at a tenth of a CPU and 256 MiB of resident memory,
as a QEMU domain's would. Everything else (the pass, the store, the channel layer) is the real one.

    python -m tests.metrics.figures_watcher --holder w1
"""

from __future__ import annotations

import os
import sys

CPU_SHARE = 0.1
MEMORY_KIB = 256 * 1024


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webvirt.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from webvirt.virt import stats

    real = stats.read_domains

    def read_domains(conn, at):  # type: ignore[no-untyped-def]
        readings = real(conn, at)
        for reading in readings:
            reading.counters.setdefault("cpu_ns", int(at * 1e9 * CPU_SHARE))
            if reading.memory_kib is None:
                reading.memory_kib = MEMORY_KIB
        return readings

    stats.read_domains = read_domains  # the watcher calls it through the module
    call_command("watch", *sys.argv[1:])


if __name__ == "__main__":
    main()
