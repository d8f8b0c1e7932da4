"""Two private libvirt daemons for scripts/test.sh, so that runs side by side each have a test driver.

    python -m tests.driver_daemons FILE

Starts two session daemons (tests/migration/daemons.py's TwoHosts), writes the test driver's URI on
each to FILE, one per line, keeps them until this process gets SIGTERM or SIGINT, then stops them.
They are this process's: a migration test's TwoHosts, which removes the daemons of runs whose owner
has gone, leaves them alone while it lives.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from tests.migration.daemons import TwoHosts


def main(out: Path) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with TwoHosts() as hosts:
        scratch = out.with_suffix(".partial")
        scratch.write_text("".join(f"test+unix:///default?socket={host.socket}\n" for host in hosts.hosts))
        scratch.replace(out)  # whoever waits for the file sees it whole
        stop.wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
