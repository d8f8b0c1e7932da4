"""Pools, volumes, streams and devices on the real libvirtd (qemu:///system).

Dir pools live in temporary directories; every pool, volume and domain made here is removed
afterwards, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import libvirt
import pytest

from tests.people import unique
from tests.storage.conftest import remove_pools
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.jobs import runner
from webvirt.jobs.models import Job
from webvirt.virt import devices as virt_devices

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.qemu]


@pytest.fixture
def folder():  # type: ignore[no-untyped-def]
    path = Path(tempfile.mkdtemp(prefix="webvirt-st-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pools(qemu_conn):  # type: ignore[no-untyped-def]
    names: list[str] = []
    yield names
    remove_pools(qemu_conn, names)


@pytest.fixture
def dir_pool(api, qemu_host, qemu_conn, folder, pools):  # type: ignore[no-untyped-def]
    name = unique()
    pools.append(name)
    response = api.post(f"/api/v1/hosts/{qemu_host.pk}/pools/", {"name": name, "type": "dir",
                                                                 "target_path": str(folder / "pool"), "build": True},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"], qemu_conn.storagePoolLookupByName(name)


@pytest.fixture
def shutoff_domain(qemu_conn, qemu_host):  # type: ignore[no-untyped-def]
    name = unique("wvt-dom")
    xml = (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features><devices>"
           "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/>"
           "<readonly/></disk><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>")
    dom = qemu_conn.defineXML(xml)
    sync_host(qemu_host)
    yield Domain.objects.get(host=qemu_host, uuid=dom.UUIDString()), dom
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass


def test_a_pool_path_that_is_not_a_directory_is_refused_and_nothing_is_defined(api, qemu_host, qemu_conn, folder,
                                                                              pools):
    name = unique()
    pools.append(name)
    (folder / "file").write_text("not a directory")
    response = api.post(f"/api/v1/hosts/{qemu_host.pk}/pools/", {"name": name, "type": "dir",
                                                                 "target_path": str(folder / "file")}, format="json")
    assert response.status_code == 400, response.json()
    assert "Not a directory" in response.json()["error"] and "was not created" in response.json()["error"]
    assert name not in qemu_conn.listStoragePools() + qemu_conn.listDefinedStoragePools()


def test_upload_and_download_are_byte_identical(api, dir_pool, folder):
    oid, pool = dir_pool
    data = os.urandom(3 * 1024 * 1024 + 12345)
    upload = folder / "image.raw"
    upload.write_bytes(data)
    with upload.open("rb") as handle:
        response = api.post(f"/api/v1/pools/{oid}/upload/", {"file": handle, "name": "up.raw"}, format="multipart")
    assert response.status_code == 202, response.json()
    assert runner.execute(response.json()["job"]) == Job.SUCCEEDED, Job.objects.get(pk=response.json()["job"]).error
    pool.refresh(0)
    assert pool.storageVolLookupByName("up.raw").info()[1] == len(data)
    vid = f"{oid}:up.raw"
    response = api.post(f"/api/v1/volumes/{vid}/download/")
    assert response.status_code == 202
    job_id = response.json()["job"]
    assert runner.execute(job_id) == Job.SUCCEEDED, Job.objects.get(pk=job_id).error
    url = Job.objects.get(pk=job_id).result["url"]
    from django.test import Client

    client = Client()
    client.force_login(Job.objects.get(pk=job_id).user)
    got = client.get(url)
    assert got.status_code == 200
    assert b"".join(got.streaming_content) == data


def test_volumes_grow_are_copied_and_in_use_ones_survive_deletes(api, dir_pool, shutoff_domain):
    oid, pool = dir_pool
    row, dom = shutoff_domain
    created = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": "disk.qcow2", "format": "qcow2",
                                                         "capacity_mib": 16}, format="json")
    assert created.status_code == 201, created.json()
    vid = created.json()["id"]
    assert api.post(f"/api/v1/volumes/{vid}/resize/", {"capacity_mib": 32}, format="json").json()["capacity"] \
        == 32 * 1024**2
    copy = api.post(f"/api/v1/volumes/{vid}/clone/", {"name": "copy.qcow2"}, format="json")
    assert runner.execute(copy.json()["job"]) == Job.SUCCEEDED
    assert "copy.qcow2" in pool.listVolumes()

    attached = api.post(f"/api/v1/domains/{row.pk}/disks/", {"volume": created.json()["path"]}, format="json")
    assert attached.status_code == 201, attached.json()
    assert attached.json() == {"target": "vda"}
    assert created.json()["path"] in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert api.delete(f"/api/v1/volumes/{vid}/").status_code == 409
    assert api.delete(f"/api/v1/pools/{oid}/?delete_volumes=true").status_code == 409
    assert pool.isActive() and "disk.qcow2" in pool.listVolumes()

    assert api.delete(f"/api/v1/domains/{row.pk}/disks/vda/").status_code == 200
    assert created.json()["path"] not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    deleted = api.delete(f"/api/v1/pools/{oid}/?delete_volumes=true")
    assert deleted.status_code == 200 and len(deleted.json()["deleted_volumes"]) == 2
    assert not Path(pool_path := created.json()["path"]).parent.exists(), pool_path


def test_a_running_domain_gets_a_disk_an_interface_and_new_cdrom_media(api, dir_pool, shutoff_domain, qemu_conn):
    oid, _pool = dir_pool
    row, dom = shutoff_domain
    iso = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": "boot.iso", "format": "raw", "capacity_mib": 1},
                   format="json").json()
    disk = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": "data.raw", "format": "raw", "capacity_mib": 4},
                    format="json").json()
    dom.create()
    live = api.post(f"/api/v1/domains/{row.pk}/disks/", {"volume": disk["path"]}, format="json")
    assert live.status_code == 201, live.json()
    assert disk["path"] in dom.XMLDesc(0) and disk["path"] in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    media = api.post(f"/api/v1/domains/{row.pk}/media/", {"target": "hdc", "path": iso["path"]}, format="json")
    assert media.status_code == 200, media.json()
    assert iso["path"] in dom.XMLDesc(0)
    nic = api.post(f"/api/v1/domains/{row.pk}/interfaces/", {"network": "default"}, format="json")
    assert nic.status_code == 201, nic.json()
    assert nic.json()["mac"] in dom.XMLDesc(0)
    wrong = api.post(f"/api/v1/domains/{row.pk}/media/", {"target": "vda", "path": iso["path"]}, format="json")
    assert wrong.status_code == 400 and "not a CD-ROM" in wrong.json()["error"]
    addresses = api.get(f"/api/v1/domains/{row.pk}/addresses/")
    assert addresses.status_code == 200  # no lease yet (the guest runs no DHCP client), but no error either


def test_cdrom_media_changes_right_after_start_even_when_libvirt_lost_track_of_the_tray(api, dir_pool,
                                                                                         shutoff_domain, qemu_conn):
    # Right after a start, libvirt 9 can keep a stale "tray open" and refuse every change after;
    # changing media within milliseconds of the start, several times, hits that window.
    oid, _pool = dir_pool
    _row, dom = shutoff_domain
    iso = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": "boot.iso", "format": "raw", "capacity_mib": 1},
                   format="json").json()
    for _ in range(6):
        dom.create()
        virt_devices.change_media(qemu_conn, dom.UUIDString(), "hdc", iso["path"])
        assert iso["path"] in dom.XMLDesc(0)
        virt_devices.change_media(qemu_conn, dom.UUIDString(), "hdc", "")
        assert iso["path"] not in dom.XMLDesc(0)
        dom.destroy()
