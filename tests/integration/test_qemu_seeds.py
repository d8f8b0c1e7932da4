"""cloud-init seeds on libvirtd with QEMU: five linked clones of one template, made by a real Celery worker
through the API, each boot and read a seed of their own.

The tiny guest has a minimal NoCloud reader (tests/guest/build.sh): it mounts the CD-ROM labelled
`cidata`, takes its hostname from `meta-data` and prints the instance-id, the hostname and how many SSH
keys the user-data holds on its serial port. Removal and expiry take the seed volume with the clone.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.utils import timezone
from lxml import etree

from tests.guest.guest import READY_MARKER
from tests.integration.test_qemu_clones import clone, clones_of, pool_volumes, wait_for_job
from tests.integration.test_qemu_lifecycle import BOOT_TIMEOUT, SerialPty, serial_pty_path
from webvirt.catalog import services as catalog
from webvirt.domains.models import Domain

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

SEED_LINE = re.compile(r"WEBVIRT-SEED instance-id=(\S+) hostname=(\S+) keys=(\d+)")
COUNT = 5
SEED_BOOT_TIMEOUT = 3 * BOOT_TIMEOUT  # a limit for a hung guest, not a speed claim (bench/clone.py measures)


def add_keys(api, count: int) -> None:  # type: ignore[no-untyped-def]
    for n in range(count):
        key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        response = api.post("/api/v1/me/ssh-keys/", {"name": f"key {n}", "public_key": key}, format="json")
        assert response.status_code == 201, response.json()


def seed_of(api, row: dict) -> str:  # type: ignore[no-untyped-def]
    """The path of the clone's seed CD-ROM, from its definition."""
    xml = etree.fromstring(api.get(f"/api/v1/domains/{row['id']}/xml/").json()["xml"].encode())
    paths = xml.xpath("./devices/disk[@device='cdrom']/source/@file")
    assert len(paths) == 1 and xml.find("./devices/disk[@device='cdrom']/readonly") is not None, paths
    return str(paths[0])


def boot_and_read_seed(api, row: dict) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    """Start the clone, read what its NoCloud reader printed, and force it off again. The serial port is
    opened right after the start: QEMU drops what a guest writes to a pty that nobody has open."""
    response = api.post(f"/api/v1/domains/{row['id']}/start/")
    assert response.status_code == 200, response.json()
    serial = SerialPty(serial_pty_path(api, row["id"]))
    try:
        # READY carries the hostname the guest took from its seed (it fails with what was shown otherwise).
        serial.wait_for(f"{READY_MARKER} hostname={row['name']} ", SEED_BOOT_TIMEOUT)
        shown = serial.seen.decode(errors="replace")
    finally:
        serial.close()
    assert api.post(f"/api/v1/domains/{row['id']}/destroy/").status_code == 200
    found = SEED_LINE.search(shown)
    assert found, shown[-2000:]
    return found[1], found[2], int(found[3])


def test_five_linked_clones_each_boot_with_their_own_seed_and_lose_it_with_their_disks(  # type: ignore[no-untyped-def]
        api, qemu_conn, tiny_template, scratch_pool, worker, clone_prefix):
    add_keys(api, 2)
    response = api.patch(f"/api/v1/templates/{tiny_template['id']}/", {"cloud_init": {
        "enabled": True, "user_data": "#cloud-config\nruncmd:\n  - [echo, hello]\n"}}, format="json")
    assert response.status_code == 200, response.json()
    job = wait_for_job(api, clone(api, tiny_template, count=COUNT, name_pattern=f"{clone_prefix}seed{{n}}",
                                  mode="linked", start=False))
    assert job["state"] == "succeeded", (job["error"], job["log"], worker.output())
    rows = clones_of(api, f"{clone_prefix}seed")
    assert len(rows) == COUNT
    seeds = {row["name"]: seed_of(api, row) for row in rows}
    assert len(set(seeds.values())) == COUNT
    assert {f"{row['name']}-cidata.iso" for row in rows} <= pool_volumes(scratch_pool)

    # One at a time (two cores, and other tests' guests): each prints its own identity, read from its seed.
    seen = {row["name"]: boot_and_read_seed(api, row) for row in rows}
    for row in rows:
        assert seen[row["name"]] == (row["uuid"], row["name"], 2), seen
    assert len({instance for instance, _, _ in seen.values()}) == COUNT

    # Removal (4 through the API) and expiry (the last one) take the seed volumes with the clones.
    for row in rows[:-1]:
        assert api.post(f"/api/v1/domains/{row['id']}/remove/").status_code in (200, 204)
    Domain.objects.filter(pk=rows[-1]["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert catalog.expire_due() == [rows[-1]["name"]]
    left = pool_volumes(scratch_pool)
    assert not {v for v in left if v.endswith("-cidata.iso")}, left
    assert not [n for n in left if n.startswith(f"{clone_prefix}seed")], left
