"""The storage pages' forms, posted as a browser posts them: read from their page, with the page's CSRF token.

Each test asserts what changed on libvirt (read through the driver's own connection), what the user is
told and the audit entry. The test driver cannot stream volumes nor resize them, so uploading,
downloading and growing are posted to a pool on the real libvirtd (qemu:///system).
"""

from __future__ import annotations

import os

import pytest

from tests.forms import audit_entry, confirmation, csrf_client, submit, token_from
from tests.people import unique
from tests.storage.test_qemu_storage import dir_pool, folder, pools  # noqa: F401
from tests.unit.conftest import pool_volume  # noqa: F401
from tests.unit.test_error_boundary import messages_of
from webvirt.accounts.models import AuditEntry
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_like(admin):  # type: ignore[no-untyped-def]
    return csrf_client(admin)


@pytest.fixture
def volume(default_pool, pool_volume):  # type: ignore[no-untyped-def]  # noqa: F811
    """A 1 MiB volume in the test driver's default-pool: (libvirt volume, its id, the pool's id)."""
    _pool, pool_oid = default_pool
    vol = pool_volume(unique() + ".img")
    return vol, f"{pool_oid}:{vol.name()}", pool_oid


@pytest.fixture
def spare_pool(test_conn, test_host, pool_names):  # type: ignore[no-untyped-def]
    """A running dir pool of its own on the test driver: (libvirt pool, its id)."""
    name = unique()
    pool_names.append(name)
    pool = test_conn.storagePoolDefineXML(f"<pool type='dir'><name>{name}</name>"
                                          f"<target><path>/{name}</path></target></pool>", 0)
    pool.create(0)
    return pool, f"{test_host.pk}:{pool.UUIDString()}"


def test_a_volume_is_deleted_after_its_confirmation(browser_like, volume, default_pool):
    vol, vid, pool_oid = volume
    name, page, action = vol.name(), f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/delete/"
    assert confirmation(browser_like, page, action) == f"Delete volume {name}? Its data is gone for good."
    response = submit(browser_like, page, action)
    assert response.status_code == 302 and response["Location"] == f"/storage/pools/{pool_oid}/"
    assert messages_of(browser_like.get(response["Location"])) == [f"Volume /default-pool/{name} is deleted."]
    assert name not in default_pool[0].listVolumes()
    entry = audit_entry("volume.delete")
    assert (entry.outcome, entry.object_id) == (AuditEntry.OK, vid)


def test_a_volume_is_copied_by_the_job_its_form_starts(browser_like, volume, default_pool):
    _vol, vid, _pool_oid = volume
    copy = unique() + ".img"
    response = submit(browser_like, f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/clone/", {"name": copy},
                      follow=True)
    assert response.redirect_chain == [(f"/storage/volumes/{vid}/", 302)]
    assert messages_of(response) == [f"Copying to {copy}: follow its progress below."]
    job = Job.objects.get(kind="volume_clone")
    assert job.title in response.content.decode()  # the page shows the copy's progress
    assert runner.execute(job.pk) == Job.SUCCEEDED, Job.objects.get(pk=job.pk).error
    assert copy in default_pool[0].listVolumes()
    assert audit_entry("volume.clone").outcome == AuditEntry.OK


def test_a_volume_copy_without_a_name_is_refused_on_the_volume_page(browser_like, volume, default_pool):
    _vol, vid, _pool_oid = volume
    before = sorted(default_pool[0].listVolumes())
    response = submit(browser_like, f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/clone/", {"name": ""},
                      follow=True)
    assert response.redirect_chain == [(f"/storage/volumes/{vid}/", 302)]
    assert messages_of(response) == ["name: This field is required."]
    assert sorted(default_pool[0].listVolumes()) == before and not Job.objects.exists()


def test_the_pool_actions_start_stop_refresh_and_autostart(browser_like, spare_pool):
    pool, oid = spare_pool
    name, page = pool.name(), f"/storage/pools/{oid}/"

    def act(verb: str) -> list[str]:
        response = submit(browser_like, page, f"/storage/pools/{oid}/{verb}/", follow=True)
        assert response.redirect_chain == [(page, 302)], verb
        assert audit_entry(f"pool.{verb}").outcome == AuditEntry.OK
        return messages_of(response)

    assert act("refresh") == [f"Pool {name}: refresh done; it is running."]
    assert act("autostart_on") == [f"Autostart is on for pool {name}."]
    assert pool.autostart() == 1
    assert act("autostart_off") == [f"Autostart is off for pool {name}."]
    assert pool.autostart() == 0
    assert confirmation(browser_like, page, f"/storage/pools/{oid}/stop/") == f"Stop pool {name}?"
    assert act("stop") == [f"Pool {name}: stop done; it is inactive."]
    assert not pool.isActive()
    assert act("start") == [f"Pool {name}: start done; it is running."]
    assert pool.isActive()


def test_a_pool_is_deleted_from_its_confirmation_page(browser_like, spare_pool, test_conn, test_host):
    pool, oid = spare_pool
    name = pool.name()
    pool.createXML(f"<volume><name>{unique()}</name><capacity unit='MiB'>1</capacity></volume>", 0)
    response = submit(browser_like, f"/storage/pools/{oid}/delete/", data={"delete_volumes": "on"}, follow=True)
    assert response.redirect_chain == [(f"/storage/host/{test_host.pk}/", 302)]
    assert messages_of(response) == [f"Pool {name} is deleted with 1 volume(s)."]
    assert name not in test_conn.listStoragePools() + test_conn.listDefinedStoragePools()
    entry = audit_entry("pool.delete")
    assert (entry.outcome, entry.object_id) == (AuditEntry.OK, oid)


def test_a_volume_the_test_driver_cannot_grow_is_said_and_unchanged(browser_like, volume):
    vol, vid, _pool_oid = volume
    response = submit(browser_like, f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/resize/",
                      {"capacity_mib": "2"}, follow=True)
    assert response.redirect_chain == [(f"/storage/volumes/{vid}/", 302)]
    [said] = messages_of(response)
    assert "not supported" in said
    assert vol.info()[1] == 1024**2
    assert audit_entry("volume.resize").outcome == AuditEntry.FAILED


def test_another_user_posting_a_storage_form_is_not_found_and_nothing_changes(stranger, volume, default_pool,
                                                                              spare_pool):
    vol, vid, _pool_oid = volume
    pool, oid = spare_pool
    client = csrf_client(stranger)
    token = token_from(client)  # a valid token: the refusal is the policy's, not the CSRF check's
    for url, data in ((f"/storage/volumes/{vid}/delete/", {}), (f"/storage/pools/{oid}/stop/", {}),
                      (f"/storage/pools/{oid}/delete/", {"delete_volumes": "on"}),
                      (f"/storage/volumes/{vid}/clone/", {"name": unique()})):
        response = client.post(url, {"csrfmiddlewaretoken": token, **data})
        assert response.status_code == 404, url
    assert vol.name() in default_pool[0].listVolumes() and pool.isActive()
    assert not Job.objects.exists()


# On the real libvirtd: what the test driver cannot do --------------------------------------------------

@pytest.mark.qemu
def test_an_uploaded_file_becomes_a_volume_and_downloads_back(admin, dir_pool, folder):  # noqa: F811
    oid, pool = dir_pool
    client = csrf_client(admin)
    data = os.urandom(256 * 1024 + 7)
    (folder / "disk.raw").write_bytes(data)
    with (folder / "disk.raw").open("rb") as handle:
        response = submit(client, f"/storage/pools/{oid}/", f"/storage/pools/{oid}/upload/",
                          {"file": handle, "name": "up.raw"}, follow=True)
    assert response.redirect_chain == [(f"/storage/pools/{oid}/", 302)]
    assert messages_of(response) == ["Uploading up.raw: follow its progress below."]
    upload = Job.objects.get(kind="upload")
    assert runner.execute(upload.pk) == Job.SUCCEEDED, Job.objects.get(pk=upload.pk).error
    pool.refresh(0)
    assert pool.storageVolLookupByName("up.raw").info()[1] == len(data)
    assert audit_entry("volume.upload").outcome == AuditEntry.OK

    vid = f"{oid}:up.raw"
    response = submit(client, f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/download/", follow=True)
    assert response.redirect_chain == [(f"/storage/volumes/{vid}/", 302)]
    assert messages_of(response) == ["Preparing the download: the file is offered below when it is ready."]
    download = Job.objects.get(kind="volume_download")
    assert runner.execute(download.pk) == Job.SUCCEEDED, Job.objects.get(pk=download.pk).error
    assert audit_entry("volume.download").outcome == AuditEntry.OK
    page = client.get(f"/storage/volumes/{vid}/").content.decode()
    assert f'href="/storage/downloads/{download.pk}/"' in page  # "Save file", once it is ready
    saved = client.get(f"/storage/downloads/{download.pk}/")
    assert saved.status_code == 200 and b"".join(saved.streaming_content) == data


@pytest.mark.qemu
def test_a_volume_grows_with_its_form(admin, dir_pool):  # noqa: F811
    oid, pool = dir_pool
    vol = pool.createXML("<volume><name>grow.raw</name><capacity unit='MiB'>4</capacity></volume>", 0)
    vid = f"{oid}:grow.raw"
    client = csrf_client(admin)
    response = submit(client, f"/storage/volumes/{vid}/", f"/storage/volumes/{vid}/resize/", {"capacity_mib": "8"},
                      follow=True)
    assert messages_of(response) == ["Volume grow.raw is now 8 MiB."]
    assert vol.info()[1] == 8 * 1024**2
    entry = audit_entry("volume.resize")
    assert entry.outcome == AuditEntry.OK and "now 8 MiB" in entry.detail


def test_deleting_a_pool_whose_volume_a_domain_uses_is_refused_on_its_confirmation_page(browser_like, spare_pool,
                                                                                        domain_row, test_conn):
    pool, oid = spare_pool
    vol = pool.createXML(f"<volume><name>{unique()}.img</name><capacity unit='MiB'>1</capacity></volume>", 0)
    row = domain_row(disk=vol.path())
    response = submit(browser_like, f"/storage/pools/{oid}/delete/", data={"delete_volumes": "on"})
    assert response.status_code == 200  # the confirmation page again, saying why
    [said] = messages_of(response)
    assert said.startswith(f"Domains use volumes of pool {pool.name()}") and row.name in said
    assert pool.isActive() and vol.name() in pool.listVolumes()
    assert audit_entry("pool.delete").outcome != AuditEntry.OK
