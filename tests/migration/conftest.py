"""Two libvirt "hosts" on this machine for migration tests: ``two_hosts`` (see daemons.py).

Started once per test session, the first time a test asks for it, and stopped at its end, also
when tests failed. What a run that crashed left behind is removed by the next start. Needs root,
as ``make test`` runs: the daemons run as the user ``webvirt-mig``, created if missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.migration.daemons import TwoHosts


@pytest.fixture(scope="session")
def two_hosts() -> Iterator[TwoHosts]:
    hosts = TwoHosts()
    try:
        hosts.start()  # stops what it started if it fails
    except Exception as exc:
        pytest.fail(f"could not start two libvirt session daemons: {exc}")
    try:
        yield hosts
    finally:
        hosts.stop()
