"""Storage pools and volumes through the API on libvirt's test driver (through the daemon)."""

from __future__ import annotations

import pytest

from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_lists_pools_with_capacity_and_usage(api, test_host):
    response = api.get(f"/api/v1/hosts/{test_host.pk}/pools/")
    assert response.status_code == 200
    pool = next(p for p in response.json() if p["name"] == "default-pool")
    assert pool["type"] == "dir" and pool["active"] and pool["capacity"] == 100 * 1024**3
    assert pool["target_path"] == "/default-pool" and 0 <= pool["used_percent"] <= 100


def test_it_creates_a_dir_pool_from_fields_and_deletes_it(api, test_host, test_conn, pool_names):
    name = unique()
    pool_names.append(name)
    response = api.post(f"/api/v1/hosts/{test_host.pk}/pools/", {"name": name, "type": "dir",
                                                                 "target_path": f"/{name}"}, format="json")
    assert response.status_code == 201, response.json()
    oid = response.json()["id"]
    assert response.json()["active"]
    assert api.post(f"/api/v1/pools/{oid}/refresh/").status_code == 200
    assert api.post(f"/api/v1/pools/{oid}/autostart/", {"enabled": True}, format="json").json()["autostart"]
    assert api.post(f"/api/v1/pools/{oid}/stop/").json()["active"] is False
    assert api.delete(f"/api/v1/pools/{oid}/").json() == {"deleted_volumes": []}
    assert name not in test_conn.listStoragePools() + test_conn.listDefinedStoragePools()
    assert AuditEntry.objects.filter(action="pool.delete", outcome=AuditEntry.OK).exists()


def test_a_pool_from_xml(api, test_host, test_conn, pool_names):
    name = unique()
    pool_names.append(name)
    xml = f"<pool type='dir'><name>{name}</name><target><path>/{name}</path></target></pool>"
    response = api.post(f"/api/v1/hosts/{test_host.pk}/pools/", {"xml": xml, "start": False}, format="json")
    assert response.status_code == 201, response.json()
    assert not test_conn.storagePoolLookupByName(name).isActive()
    got = api.get(f"/api/v1/pools/{response.json()['id']}/xml/").json()["xml"]
    assert f"<name>{name}</name>" in got


def test_pool_form_errors_say_what_is_missing(api, test_host):
    response = api.post(f"/api/v1/hosts/{test_host.pk}/pools/", {"name": "x1", "type": "netfs",
                                                                 "target_path": "/mnt/x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "A network file system (NFS) pool needs a source host."


def test_volumes_are_created_listed_resized_and_deleted(api, default_pool, test_conn):
    pool, oid = default_pool
    name = unique() + ".qcow2"
    response = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": name, "format": "qcow2", "capacity_mib": 64},
                        format="json")
    assert response.status_code == 201, response.json()
    vid = response.json()["id"]
    assert vid == f"{oid}:{name}" and response.json()["capacity"] == 64 * 1024**2
    listed = {v["name"]: v for v in api.get(f"/api/v1/pools/{oid}/volumes/").json()}
    assert listed[name]["path"] == f"/default-pool/{name}" and listed[name]["used_by"] == []
    grow = api.post(f"/api/v1/volumes/{vid}/resize/", {"capacity_mib": 128}, format="json")
    assert grow.status_code == 400 and "not supported" in grow.json()["error"]  # the test driver cannot resize
    shrink = api.post(f"/api/v1/volumes/{vid}/resize/", {"capacity_mib": 32}, format="json")
    assert shrink.status_code == 400 and "only grows volumes" in shrink.json()["error"]
    assert "<volume" in api.get(f"/api/v1/volumes/{vid}/xml/").json()["xml"]
    assert api.delete(f"/api/v1/volumes/{vid}/").status_code == 200
    assert name not in pool.listVolumes()


def test_a_volume_bigger_than_the_pool_is_refused(api, default_pool):
    pool, oid = default_pool
    name = unique()
    response = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": name, "format": "raw",
                                                          "capacity_mib": 200 * 1024}, format="json")
    assert response.status_code == 400
    assert "needs 204,800 MiB but pool default-pool has only" in response.json()["error"]
    assert name not in pool.listVolumes()


def test_a_volume_a_domain_uses_cannot_be_deleted_nor_its_pool(api, default_pool, domain_row, test_conn):
    pool, oid = default_pool
    name = unique() + ".img"
    vid = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": name, "format": "raw", "capacity_mib": 8},
                   format="json").json()["id"]
    row = domain_row(disk=f"/default-pool/{name}")
    volume = api.get(f"/api/v1/volumes/{vid}/").json()
    assert volume["used_by"] == [row.name]
    response = api.delete(f"/api/v1/volumes/{vid}/")
    assert response.status_code == 409 and f"is a disk of {row.name}" in response.json()["error"]
    refused = api.delete(f"/api/v1/pools/{oid}/?delete_volumes=true")
    assert refused.status_code == 409 and "Domains use volumes of pool default-pool" in refused.json()["error"]
    assert name in pool.listVolumes() and pool.isActive()


def test_a_volume_with_a_linked_clone_cannot_be_deleted(api, default_pool, test_conn):
    pool, oid = default_pool
    base = unique() + ".qcow2"
    vid = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": base, "format": "qcow2", "capacity_mib": 8},
                   format="json").json()["id"]
    pool.createXML(f"<volume><name>{unique()}-overlay.qcow2</name><capacity unit='MiB'>8</capacity>"
                   f"<target><format type='qcow2'/></target><backingStore><path>/default-pool/{base}</path>"
                   "<format type='qcow2'/></backingStore></volume>", 0)
    response = api.delete(f"/api/v1/volumes/{vid}/")
    assert response.status_code == 409 and "is the backing file of" in response.json()["error"]


def test_a_volume_is_copied_by_a_job(api, default_pool, test_conn):
    pool, oid = default_pool
    name = unique() + ".qcow2"
    vid = api.post(f"/api/v1/pools/{oid}/volumes/", {"name": name, "format": "qcow2", "capacity_mib": 16},
                   format="json").json()["id"]
    response = api.post(f"/api/v1/volumes/{vid}/clone/", {"name": f"{name}-copy"}, format="json")
    assert response.status_code == 202, response.json()
    assert runner.execute(response.json()["job"]) == Job.SUCCEEDED, Job.objects.get().error
    assert f"{name}-copy" in pool.listVolumes()
    taken = api.post(f"/api/v1/volumes/{vid}/clone/", {"name": f"{name}-copy"}, format="json")
    assert taken.status_code == 409


def test_storage_does_not_exist_for_a_stranger(client, stranger, default_pool):
    _pool, oid = default_pool
    client.force_login(stranger)
    assert client.get(f"/api/v1/pools/{oid}/").status_code == 404
    assert client.get(f"/api/v1/pools/{oid}/volumes/").status_code == 404
