"""Install from scratch on libvirtd with QEMU: upload an ISO into a pool, then install a machine from it.

Jobs run in this process (`runner.execute`), as a worker would run them. The "ISO" is random bytes:
the machine boots nothing useful, which is all these tests need.
"""

from __future__ import annotations

import os

import libvirt
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from lxml import etree

from tests.integration.conftest import pool_dir
from webvirt.domains.models import Domain
from webvirt.install import services
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]


def upload(api, host, pool, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/uploads/", {"host": host.pk, "pool": pool.name(), "name": name,
                                         "file": SimpleUploadedFile("cd.iso", data)}, format="multipart")


def download(conn: libvirt.virConnect, path: str) -> bytes:
    vol = conn.storageVolLookupByPath(path)
    stream = conn.newStream(0)
    vol.download(stream, 0, vol.info()[1], 0)
    parts: list[bytes] = []
    stream.recvAll(lambda _st, data, out: out.append(data), parts)
    stream.finish()
    return b"".join(parts)


def install(api, host, pool, name: str, iso: str, **extra):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/install/", {"host": host.pk, "name": name, "vcpus": 1, "memory_mib": 64,
                                         "disk_gib": 0.05, "pool": pool.name(), "iso": iso, "graphics": "vnc",
                                         "boot": ["cdrom", "hd"], "domain_type": "qemu", **extra}, format="json")


@pytest.fixture
def iso(api, qemu_conn, qemu_host, scratch_pool, clone_prefix, settings, tmp_path):  # type: ignore[no-untyped-def]
    """A few MB of random bytes uploaded as an ISO through the API and the upload job."""
    settings.STATE_DIR = tmp_path  # received files go to STATE_DIR/uploads
    data = os.urandom(3 * 1024**2 + 12345)
    response = upload(api, qemu_host, scratch_pool, f"{clone_prefix}cd.iso", data)
    assert response.status_code == 202, response.json()
    assert runner.execute(response.json()["job"]) == Job.SUCCEEDED, Job.objects.get(pk=response.json()["job"]).error
    return Job.objects.get(pk=response.json()["job"]).result["volume"], data


def test_an_uploaded_iso_is_byte_for_byte_the_file(api, qemu_conn, qemu_host, scratch_pool, iso, settings):
    path, data = iso
    assert path == str(pool_dir(scratch_pool) / os.path.basename(path))
    assert download(qemu_conn, path) == data
    job = Job.objects.get(kind="upload")
    assert job.progress == 100 and job.created_objects == []
    assert not any((settings.STATE_DIR / "uploads").iterdir()), "the received file is removed after the job"


def test_an_upload_into_a_missing_pool_or_over_an_existing_volume_is_refused_before_any_work(  # type: ignore[no-untyped-def]
        api, qemu_host, scratch_pool, iso):
    path, _data = iso
    response = upload(api, qemu_host, scratch_pool, os.path.basename(path), b"x" * 100)
    assert response.status_code == 409 and "already exists" in response.json()["error"]
    response = api.post("/api/v1/uploads/", {"host": qemu_host.pk, "pool": "no-such-pool", "name": "a.iso",
                                             "file": SimpleUploadedFile("a.iso", b"x")}, format="multipart")
    assert response.status_code == 404 and "no storage pool" in response.json()["error"]
    assert Job.objects.filter(kind="upload").count() == 1


def test_install_defines_and_starts_a_machine_with_the_iso_as_its_cdrom(  # type: ignore[no-untyped-def]
        api, qemu_conn, qemu_host, scratch_pool, iso, clone_prefix):
    path, _data = iso
    name = f"{clone_prefix}new"
    response = install(api, qemu_host, scratch_pool, name, path)
    assert response.status_code == 202, response.json()
    assert runner.execute(response.json()["job"]) == Job.SUCCEEDED, Job.objects.get(pk=response.json()["job"]).error
    dom = qemu_conn.lookupByName(name)
    try:
        assert dom.isActive()
        xml = etree.fromstring(dom.XMLDesc(0).encode())
        assert xml.get("type") == "qemu"
        assert xml.xpath("./devices/disk[@device='cdrom']/source/@file") == [path]
        disk = xml.xpath("./devices/disk[@device='disk']/source/@file")[0]
        assert disk == str(pool_dir(scratch_pool) / f"{name}-vda.qcow2")
        assert [b.get("dev") for b in xml.findall("./os/boot")] == ["cdrom", "hd"]
        assert xml.find("./devices/graphics").get("type") == "vnc"
        row = Domain.objects.get(host=qemu_host, name=name)
        assert row.job_id == response.json()["job"] and row.owner is not None
    finally:
        dom.destroy()


def test_bad_input_is_refused_before_any_work(api, qemu_conn, qemu_host, scratch_pool, iso, clone_prefix):  # type: ignore[no-untyped-def]
    path, _data = iso
    volumes = {v.name() for v in scratch_pool.listAllVolumes(0)}
    cases = [
        ({"name": "bad name!"}, 400, "not a valid domain name"),
        ({"name": f"{clone_prefix}src", "iso": path + ".missing"}, 404, "no ISO volume"),
        ({"name": f"{clone_prefix}big", "disk_gib": 60000}, 409, "GiB free"),
        ({"name": f"{clone_prefix}net", "network": "no-such-network"}, 404, "no network"),
        ({"name": f"{clone_prefix}none", "boot": ["cdrom"], "iso": ""}, 400, "ISO"),
    ]
    for extra, status, words in cases:
        response = install(api, qemu_host, scratch_pool, **{"iso": path, **extra})
        assert response.status_code == status and words in response.json()["error"], (extra, response.json())
    assert not Job.objects.filter(kind="install").exists()
    assert {v.name() for v in scratch_pool.listAllVolumes(0)} == volumes


def test_a_failed_install_removes_the_disk_and_the_definition(  # type: ignore[no-untyped-def]
        api, qemu_conn, qemu_host, scratch_pool, iso, clone_prefix):
    path, _data = iso
    name = f"{clone_prefix}gone"
    response = install(api, qemu_host, scratch_pool, name, path)
    assert response.status_code == 202
    qemu_conn.storageVolLookupByPath(path).delete(0)  # the ISO disappears before the job runs: the start fails
    assert runner.execute(response.json()["job"]) == Job.FAILED
    job = Job.objects.get(pk=response.json()["job"])
    assert job.error and job.created_objects == []
    with pytest.raises(libvirt.libvirtError):
        qemu_conn.lookupByName(name)
    scratch_pool.refresh(0)
    assert not scratch_pool.listAllVolumes(0)
    assert not Domain.objects.filter(name=name).exists()


def test_the_domain_type_is_kvm_only_where_the_host_offers_it(qemu_host):  # type: ignore[no-untyped-def]
    qemu_host.facts = {"kvm": False}
    assert services.domain_type_for(qemu_host, "") == "qemu"
    with pytest.raises(services.VirtError):
        services.domain_type_for(qemu_host, "kvm")
    qemu_host.facts = {"kvm": True}
    assert services.domain_type_for(qemu_host, "") == "kvm"
    assert services.domain_type_for(qemu_host, "qemu") == "qemu"
