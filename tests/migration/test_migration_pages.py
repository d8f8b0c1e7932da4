"""The Migrate page, its pre-flight panel, the evacuation page and maintenance, through Django's test client.

Moving a domain needs two real hosts: the ``two_hosts`` session daemons, registered as the webvirt hosts
``mig-a`` and ``mig-b``, with one running tiny guest on ``mig-a`` whose disk (a whole copy of the guest's
image, no backing file) lies in a's own pool ``mig-pool``: it can move with its disk copied whole, not with
shared storage, nor by copying changes. It is only started, never booted to its shell: the pages need a
running domain, not a working one.

The test client's requests run in a transaction that is rolled back, so a job a page starts is written but
never handed to a worker: nothing moves here (tests/browser/test_migration_browser.py moves it). The
evacuation page, maintenance and the refusals use libvirt's test driver.
"""

from __future__ import annotations

import re
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.test import Client

from tests.guest.guest import ensure_image, tiny_domain_xml
from tests.migration.daemons import TwoHosts
from tests.people import make_user
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job

pytestmark = pytest.mark.qemu


# Shared with tests/browser/test_migration_browser.py ------------------------------------------------

def start_guest(two_hosts: TwoHosts, name: str, *, shared: bool = False) -> libvirt.virDomain:
    """Define and start the tiny guest `name` on host a; its disk is a whole copy of the image (no backing
    file) in a's own pool mig-pool, or in mig-shared, which both hosts see at the same path."""
    folder = two_hosts.shared_dir if shared else two_hosts.a.pool_dir
    disk = folder / f"{name}.qcow2"
    shutil.copyfile(ensure_image(), disk)
    two_hosts.give(disk)
    conn = two_hosts.a.open()
    try:
        conn.storagePoolLookupByName(two_hosts.SHARED_POOL if shared else two_hosts.POOL).refresh(0)
        dom = conn.defineXML(tiny_domain_xml(name, str(disk)))
        dom.create()
        return dom
    finally:
        conn.close()


def remove_guest(two_hosts: TwoHosts, name: str) -> None:
    """Destroy and undefine `name` wherever it is, and delete its disk (on both hosts' pools)."""
    for daemon in two_hosts.hosts:
        conn = daemon.open()
        try:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                dom = None
            if dom is not None:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        finally:
            conn.close()
    for folder in (two_hosts.shared_dir, two_hosts.a.pool_dir, two_hosts.b.pool_dir):
        Path(folder, f"{name}.qcow2").unlink(missing_ok=True)
    for daemon in two_hosts.hosts:
        conn = daemon.open()
        try:
            for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                pool.refresh(0)
        finally:
            conn.close()


def drop_connections(*hosts: Host) -> None:
    from webvirt.hosts.connections import manager

    for host in hosts:
        manager.drop(host.target().key)


# Fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guest(two_hosts: TwoHosts) -> Iterator[str]:
    name = f"migpg-{uuidlib.uuid4().hex[:6]}"
    start_guest(two_hosts, name)
    yield name
    remove_guest(two_hosts, name)


@pytest.fixture
def hosts_ab(db: Any, two_hosts: TwoHosts) -> Iterator[tuple[Host, Host]]:
    """The two daemons as webvirt's hosts mig-a and mig-b, their domains loaded into the cache."""
    made = tuple(Host.objects.create(name=f"mig-{d.name}", uri=d.uri, migration_uri=two_hosts.MIGRATION_URI,
                                     status=Host.ONLINE) for d in two_hosts.hosts)
    for host in made:
        sync_host(host)
    yield made  # type: ignore[misc]
    drop_connections(*made)


@pytest.fixture
def row(hosts_ab: tuple[Host, Host], guest: str) -> Domain:
    return Domain.objects.get(host=hosts_ab[0], name=guest)


def check(client: Client, row: Domain, **values: str) -> str:
    """The pre-flight panel for these form values, as the page's htmx request asks for it."""
    query = {"host": str(Host.objects.get(name="mig-b").pk), "live": "on", "storage": "copy-all",
             "max_downtime_ms": "300", "bandwidth_mib_s": "", **values}
    response = client.get(f"/domains/{row.pk}/migrate/check/", query, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def problems(html: str) -> list[str]:
    return [text(p) for p in re.findall(r"<li>(.*?)</li>", html, re.S)]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


# The Migrate page -----------------------------------------------------------------------------------

def test_the_migrate_page_offers_the_other_hosts(admin_client: Client, row: Domain, test_host: Host) -> None:
    Host.objects.filter(pk=test_host.pk).update(maintenance=True)
    response = admin_client.get(f"/domains/{row.pk}/migrate/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<h1>Migrate {row.name}</h1>" in html
    assert re.search(r"From <strong>mig-a</strong>", html)
    # The destination: every other host, those in maintenance last (the first is chosen); never mig-a.
    options = re.findall(r"<option value=\"(\d+)\"( selected)?>([^<]*)</option>", html)
    names = [label for _, _, label in options]
    assert names == ["mig-b", "testhost (in maintenance)"], names
    assert options[0][1] == " selected"
    # It runs, so live is ticked; shared storage is the first choice; the panel asks for itself on load.
    assert re.search(r'<input type="checkbox" name="live"[^>]* checked', html)
    assert re.search(r'<input type="radio" name="storage" value="shared"[^>]* checked', html)
    assert f'hx-get="/domains/{row.pk}/migrate/check/"' in html
    assert 'id="preflight"' in html
    # The domain's page offers the way here.
    assert f'href="/domains/{row.pk}/migrate/"' in admin_client.get(f"/domains/{row.pk}/").content.decode()


def test_the_check_says_ready(admin_client: Client, row: Domain) -> None:
    html = check(admin_client, row)
    assert 'data-preflight="ok"' in html, html
    assert text(html) == "Ready: nothing keeps it from moving with these settings."


def test_the_check_lists_the_problems(admin_client: Client, row: Domain, two_hosts: TwoHosts) -> None:
    disk = two_hosts.a.pool_dir / f"{row.name}.qcow2"
    html = check(admin_client, row, storage="shared")
    assert 'data-preflight="problems"' in html
    assert "It cannot move with these settings" in html
    assert problems(html) == [f"The destination does not see disk vda at {disk}. Shared storage needs the same path "
                              "in a storage pool on both hosts; otherwise copy the disks."]
    # Copying changes needs a linked clone; this disk has no base. Offline is wrong too: it runs.
    found = problems(check(admin_client, row, storage="copy-inc", live=""))
    assert found == [f"{row.name} is running: migrate it live, or shut it down first.",
                     "Disk vda is not a linked clone&#x27;s overlay: copy all of it instead."], found


def test_the_check_names_what_is_wrong_with_the_values(admin_client: Client, row: Domain) -> None:
    html = check(admin_client, row, max_downtime_ms="5")
    assert 'role="alert"' in html and 'data-preflight="invalid"' in html
    assert problems(html) == ["Maximum downtime (ms): Ensure this value is greater than or equal to 10."]


def test_posting_the_form_starts_a_job(admin_client: Client, row: Domain, hosts_ab: tuple[Host, Host]) -> None:
    b = hosts_ab[1]
    response = admin_client.post(f"/domains/{row.pk}/migrate/", {
        "host": b.pk, "live": "on", "storage": "copy-all", "max_downtime_ms": "250", "bandwidth_mib_s": "64"})
    job = Job.objects.get(kind="migrate", target_type="domain", target_id=str(row.pk))
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.title == f"Migrate {row.name} to mig-b"
    assert job.params == {"domain": row.pk, "host": b.pk, "live": True, "storage": "copy-all",
                          "max_downtime_ms": 250, "bandwidth_mib_s": 64}
    page = admin_client.get(response["Location"]).content.decode()
    assert f"Migrating {row.name} to mig-b." in page
    # One at a time: a second request is refused on the form while the first job is queued.
    again = admin_client.post(f"/domains/{row.pk}/migrate/", {
        "host": b.pk, "live": "on", "storage": "copy-all", "max_downtime_ms": "300"})
    assert again.status_code == 200
    assert f"{row.name} is being migrated already." in again.content.decode()
    assert Job.objects.filter(kind="migrate").count() == 1


def test_a_move_that_cannot_start_is_refused_on_the_form(admin_client: Client, row: Domain,
                                                         hosts_ab: tuple[Host, Host]) -> None:
    response = admin_client.post(f"/domains/{row.pk}/migrate/", {
        "host": hosts_ab[1].pk, "live": "on", "storage": "copy-inc", "max_downtime_ms": "300"})
    assert response.status_code == 200
    assert "Disk vda is not a linked clone&#x27;s overlay: copy all of it instead." in response.content.decode()
    assert not Job.objects.filter(kind="migrate").exists()


# Evacuation and maintenance (the test driver) ----------------------------------------------------

@pytest.fixture
def running(test_conn: libvirt.virConnect, make_test_domain: Any, test_host: Host) -> tuple[list[str], str]:
    """Two running domains and a shut-off one on the test host; the names of the running ones, sorted."""
    tag = uuidlib.uuid4().hex[:6]
    up = sorted(f"evac-{tag}-{n}" for n in ("one", "two"))
    for name in up:
        make_test_domain(name, start=True)
    off = f"evac-{tag}-off"
    make_test_domain(off)
    sync_host(test_host)
    return [name for name in sorted(d.name for d in Domain.objects.filter(host=test_host, state="running"))], off


def test_the_evacuation_page_lists_the_running_domains(admin_client: Client, test_host: Host,
                                                       running: tuple[list[str], str]) -> None:
    up, off = running
    response = admin_client.get(f"/hosts/{test_host.pk}/evacuate/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Evacuate {test_host.name}?" in html
    listed = re.findall(r'<li><a href="/domains/\d+/">([^<]*)</a></li>', html)
    assert listed == up, listed
    assert off not in html
    assert f"<strong>{len(up)} running domains</strong> will move" in html
    # Confirming: maintenance at once, and the job (which a worker would run) on its page.
    response = admin_client.post(f"/hosts/{test_host.pk}/evacuate/")
    job = Job.objects.get(kind="evacuate")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert Host.objects.get(pk=test_host.pk).maintenance


def test_maintenance_ends_from_the_host_page(admin_client: Client, test_host: Host) -> None:
    Host.objects.filter(pk=test_host.pk).update(maintenance=True)
    html = admin_client.get(f"/hosts/{test_host.pk}/").content.decode()
    assert "in maintenance</span>" in html
    assert f'action="/hosts/{test_host.pk}/maintenance/"' in html and "End maintenance</button>" in html
    assert "Evacuate…" not in html
    response = admin_client.post(f"/hosts/{test_host.pk}/maintenance/", {"enabled": "0"})
    assert response.status_code == 302 and response["Location"] == f"/hosts/{test_host.pk}/"
    assert not Host.objects.get(pk=test_host.pk).maintenance
    html = admin_client.get(response["Location"]).content.decode()
    assert f"{test_host.name} is out of maintenance." in html
    assert "in maintenance</span>" not in html and "End maintenance" not in html
    assert f'href="/hosts/{test_host.pk}/evacuate/"' in html


def test_only_administrators_see_any_of_it(client: Client, test_host: Host, make_test_domain: Any) -> None:
    owner = make_user("olga")
    dom = make_test_domain(start=True)
    sync_host(test_host)
    row = Domain.objects.get(host=test_host, uuid=dom.UUIDString())
    Domain.objects.filter(pk=row.pk).update(owner=owner)
    client.force_login(owner)
    assert client.get(f"/domains/{row.pk}/").status_code == 200  # the owner sees the domain...
    assert "Migrate…" not in client.get(f"/domains/{row.pk}/").content.decode()
    for method, path in [("get", f"/domains/{row.pk}/migrate/"), ("post", f"/domains/{row.pk}/migrate/"),
                         ("get", f"/domains/{row.pk}/migrate/check/?host={test_host.pk}"),
                         ("get", f"/hosts/{test_host.pk}/evacuate/"), ("post", f"/hosts/{test_host.pk}/evacuate/"),
                         ("post", f"/hosts/{test_host.pk}/maintenance/")]:
        assert getattr(client, method)(path).status_code == 404, (method, path)  # ... but not these
    assert not Job.objects.exists()
    assert not Host.objects.get(pk=test_host.pk).maintenance
