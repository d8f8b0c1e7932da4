"""The install and upload pages and API checks, on libvirt's test driver (no job runs here)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_the_new_machine_page_lists_the_hosts_pools_and_networks(admin_client, test_host):
    response = admin_client.get(f"/install/new/?host={test_host.pk}")
    assert response.status_code == 200
    page = response.content.decode()
    assert "default-pool" in page and "New machine from an ISO" in page and "Upload ISO" in page


def test_a_stranger_finds_no_install_or_upload_page(client, stranger, test_host):
    client.force_login(stranger)
    assert client.get("/install/new/").status_code == 404
    assert client.get("/install/upload/").status_code == 404


def test_the_domain_list_offers_new_machine_and_upload_to_admins(admin_client, test_host):
    page = admin_client.get("/domains/").content.decode()
    assert "/install/new/" in page and "/install/upload/" in page


def test_the_form_starts_an_install_job_and_shows_it(admin_client, test_host, monkeypatch):
    monkeypatch.setattr("webvirt.jobs.tasks.run_job.delay", lambda job_id: None)
    response = admin_client.post(f"/install/new/?host={test_host.pk}", {
        "name": "fresh", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "pool": "default-pool", "iso": "",
        "network": "default", "graphics": "vnc", "boot": "hd", "domain_type": ""})
    job = Job.objects.get(kind="install")
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.params["domain_type"] == "qemu" and job.params["boot"] == ["hd"]


def test_a_taken_name_is_said_next_to_the_form_and_starts_nothing(admin_client, test_host, make_test_domain):
    make_test_domain("taken")
    from webvirt.domains.services import sync_host

    sync_host(test_host)
    response = admin_client.post(f"/install/new/?host={test_host.pk}", {
        "name": "taken", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "pool": "default-pool", "iso": "",
        "network": "", "graphics": "none", "boot": "hd", "domain_type": ""})
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert not Job.objects.exists()


def test_the_api_refuses_an_install_without_a_pool_and_an_upload_without_a_file(api, test_host):
    response = api.post("/api/v1/install/", {"host": test_host.pk, "name": "x"}, format="json")
    assert response.status_code == 400 and response.json()["error"].startswith("pool:")
    response = api.post("/api/v1/uploads/", {"host": test_host.pk, "pool": "default-pool"}, format="multipart")
    assert response.status_code == 400 and response.json()["error"].startswith("file:")


def test_an_upload_for_a_host_nobody_sees_is_not_found(client, stranger, test_host):
    from webvirt.accounts.tokens import create_token

    token = create_token(stranger)[1]
    response = client.post("/api/v1/uploads/", {"host": test_host.pk, "pool": "default-pool",
                                                "file": SimpleUploadedFile("a.iso", b"x")},
                           HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_the_upload_form_keeps_the_file_and_starts_a_job(admin_client, test_host, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    response = admin_client.post(f"/install/upload/?host={test_host.pk}", {
        "pool": "default-pool", "name": "", "file": SimpleUploadedFile("debian.iso", b"x" * 4096)})
    job = Job.objects.get(kind="upload")
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.params["name"] == "debian.iso" and job.params["size"] == 4096
    assert open(job.params["file"], "rb").read() == b"x" * 4096
    assert job.params["file"].startswith(str(tmp_path / "uploads"))


def test_a_large_upload_is_kept_by_a_rename_not_a_second_copy():
    import os

    from django.core.files.uploadedfile import TemporaryUploadedFile

    from webvirt.install.services import save_upload

    # Django spools uploads above 2.5 MiB to FILE_UPLOAD_TEMP_DIR, which is next to the upload folder.
    upload = TemporaryUploadedFile("big.iso", "application/octet-stream", 10, None)
    upload.write(b"0123456789")
    upload.flush()
    spooled = os.stat(upload.temporary_file_path())
    kept = save_upload(upload)
    try:
        assert os.stat(kept).st_ino == spooled.st_ino and kept.read_bytes() == b"0123456789"
    finally:
        kept.unlink()
        upload.close()
