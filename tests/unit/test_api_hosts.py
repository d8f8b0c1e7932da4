"""The host API: registration with a connection test, write-only credentials, edit and delete."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from tests.conftest import TEST_URI, virt_admin
from tests.people import unique
from webvirt import crypto
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db
SECRET_PASSWORD = "s3cret-sasl-passw0rd"
SECRET_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAfake\n-----END OPENSSH PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def _drop_connections():  # type: ignore[no-untyped-def]
    yield
    for host in Host.objects.all():
        manager.drop(host.target().key)


def register(api, **fields):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/hosts/", {"name": unique("host"), "uri": TEST_URI, **fields}, format="json")


def test_it_registers_a_host_that_answers(api, test_conn, make_test_domain):
    dom = make_test_domain()
    response = register(api, name="lab", description="The lab")
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["uri"], body["status"], body["description"]) == ("lab", TEST_URI, "online", "The lab")
    assert body["facts"]["hypervisor"] == "TEST"
    assert Domain.objects.filter(host_id=body["id"], uuid=dom.UUIDString()).exists()
    assert AuditEntry.objects.get(action="host.create").outcome == AuditEntry.OK


def test_it_refuses_a_malformed_uri(api):
    response = register(api, uri="not a uri")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "not a libvirt URI" in response.json()["error"]
    assert not Host.objects.exists()


def test_it_refuses_an_unknown_scheme(api):
    response = register(api, uri="foo:///x")
    assert response.status_code == 400
    assert response.json() == {"error": "libvirt has no driver for the scheme 'foo'. Use one of qemu:///, "
                                        "qemu+ssh://, qemu+tcp://, qemu+tls:// or test+unix:///.",
                               "code": "unknown_scheme"}
    assert not Host.objects.exists()


def test_it_says_plainly_when_the_host_refuses_the_connection(api):
    response = register(api, uri="qemu+tcp://127.0.0.1:1/system")
    assert response.status_code == 409
    assert response.json()["code"] == "refused"
    assert "refused the connection" in response.json()["error"]
    assert not Host.objects.exists()
    assert AuditEntry.objects.get(action="host.create").outcome == AuditEntry.FAILED


def test_it_gives_up_on_a_host_that_never_answers_within_the_timeout(api, hung_port):
    started = time.monotonic()
    response = register(api, name="frozen", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system")
    assert time.monotonic() - started < 7
    assert response.status_code == 409
    assert response.json() == {"error": "Host frozen did not answer within 5 s.", "code": "unreachable"}
    assert not Host.objects.exists()
    assert AuditEntry.objects.get(action="host.create", outcome=AuditEntry.FAILED).object_repr == "frozen"


def test_it_never_answers_with_the_credentials(api):
    response = register(api, username="sasl", password=SECRET_PASSWORD, ssh_key=SECRET_KEY)
    assert response.status_code == 201
    host_id = response.json()["id"]
    for answer in (response, api.get(f"/api/v1/hosts/{host_id}/"), api.get("/api/v1/hosts/")):
        assert SECRET_PASSWORD not in answer.content.decode()
        assert "OPENSSH PRIVATE KEY" not in answer.content.decode()
    body = api.get(f"/api/v1/hosts/{host_id}/").json()
    assert (body["has_password"], body["has_ssh_key"], body["username"]) == (True, True, "sasl")
    assert "password" not in body and "ssh_key" not in body


def test_it_stores_the_credentials_encrypted(api):
    host_id = register(api, password=SECRET_PASSWORD, ssh_key=SECRET_KEY).json()["id"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted, ssh_key_encrypted FROM hosts_host WHERE id = %s", [host_id])
        stored_password, stored_key = cursor.fetchone()
    assert SECRET_PASSWORD not in stored_password and "OPENSSH" not in stored_key
    assert crypto.decrypt(stored_password) == SECRET_PASSWORD
    assert Host.objects.get(pk=host_id).target().ssh_key == SECRET_KEY


def test_a_blank_password_keeps_the_stored_one_and_clearing_removes_both(api):
    host_id = register(api, password=SECRET_PASSWORD, ssh_key=SECRET_KEY).json()["id"]
    response = api.patch(f"/api/v1/hosts/{host_id}/", {"password": "", "description": "x"}, format="json")
    assert response.status_code == 200
    assert Host.objects.get(pk=host_id).target().password == SECRET_PASSWORD
    body = api.patch(f"/api/v1/hosts/{host_id}/", {"clear_credentials": True}, format="json").json()
    assert (body["has_password"], body["has_ssh_key"]) == (False, False)
    assert Host.objects.get(pk=host_id).password_encrypted == ""


def test_it_edits_a_host_after_testing_the_new_settings(api):
    host_id = register(api, name="before").json()["id"]
    response = api.put(f"/api/v1/hosts/{host_id}/", {"name": "after", "uri": TEST_URI, "description": "moved"},
                       format="json")
    assert response.status_code == 200
    host = Host.objects.get(pk=host_id)
    assert (host.name, host.description) == ("after", "moved")
    assert AuditEntry.objects.get(action="host.update").outcome == AuditEntry.OK


def test_an_edit_to_an_unreachable_uri_changes_nothing(api):
    host_id = register(api, name="kept").json()["id"]
    response = api.patch(f"/api/v1/hosts/{host_id}/", {"uri": "qemu+tcp://127.0.0.1:1/system"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "refused"
    assert Host.objects.get(pk=host_id).uri == TEST_URI
    assert AuditEntry.objects.get(action="host.update").outcome == AuditEntry.FAILED


def test_a_name_already_registered_answers_409(api):
    register(api, name="taken")
    response = register(api, name="taken")
    assert response.status_code == 409
    assert response.json() == {"error": "A host named 'taken' is already registered. Choose another name.",
                               "code": "conflict"}
    assert Host.objects.filter(name="taken").count() == 1


def test_renaming_to_a_name_already_registered_answers_409(api):
    register(api, name="first")
    other = register(api, name="second").json()["id"]
    response = api.patch(f"/api/v1/hosts/{other}/", {"name": "first"}, format="json")
    assert response.status_code == 409
    assert Host.objects.get(pk=other).name == "second"


def test_it_deletes_a_host_and_forgets_its_domains_only(api, test_conn, make_test_domain):
    dom = make_test_domain()
    host_id = register(api).json()["id"]
    assert Domain.objects.filter(host_id=host_id).exists()
    assert api.delete(f"/api/v1/hosts/{host_id}/").status_code == 204
    assert not Host.objects.filter(pk=host_id).exists()
    assert not Domain.objects.filter(host_id=host_id).exists()
    assert test_conn.lookupByUUIDString(dom.UUIDString()).name() == dom.name()
    assert AuditEntry.objects.get(action="host.delete").outcome == AuditEntry.OK


def test_it_lists_hosts_with_their_domain_counts(api, test_host, make_test_domain):
    response = api.get("/api/v1/hosts/")
    assert response.status_code == 200
    assert set(response.json()) == {"count", "next", "previous", "results"}
    [row] = response.json()["results"]
    assert row["name"] == "testhost"
    assert row["domain_counts"] == {s: n for s, n in row["domain_counts"].items() if n} and row["domain_counts"]


def test_the_host_list_counts_every_hosts_domains_in_one_query(api, admin_client, django_assert_max_num_queries):
    # Cache rows only (the counts come from the state cache): 8 hosts, each with its own mix of states.
    for n in range(8):
        host = Host.objects.create(name=f"counted-{n}", uri=f"test+unix:///counted{n}", status=Host.OFFLINE)
        Domain.objects.bulk_create([Domain(host=host, uuid=f"00000000-0000-0000-0000-{n:06d}{i:06d}", name=f"d{i}",
                                           state="running" if i <= n else "shutoff") for i in range(3)])
    with django_assert_max_num_queries(8):  # session, user, token..., hosts, one count: not one per host
        response = api.get("/api/v1/hosts/")
    rows = {row["name"]: row["domain_counts"] for row in response.json()["results"]}
    assert rows["counted-0"] == {"running": 1, "shutoff": 2} and rows["counted-5"] == {"running": 3}
    with django_assert_max_num_queries(10):
        page = admin_client.get("/hosts/")
    assert page.status_code == 200 and b"counted-7" in page.content


def test_a_missing_field_answers_400_naming_the_field(api):
    response = api.post("/api/v1/hosts/", {"name": "nouri"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "uri: This field is required."
    assert response.json()["fields"] == {"uri": ["This field is required."]}


def test_a_missing_host_answers_404_json(api):
    response = api.get("/api/v1/hosts/999999/")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}
    assert api.delete("/api/v1/hosts/999999/").status_code == 404


def test_an_anonymous_client_is_refused(client, test_host):
    response = client.get("/api/v1/hosts/")
    assert response.status_code in (401, 403)
    assert set(response.json()) == {"error", "code"}
    assert client.post("/api/v1/hosts/", {"name": "x", "uri": TEST_URI}).status_code in (401, 403)


def test_the_stranger_sees_no_hosts_and_cannot_touch_one(client, stranger, test_host):
    client.force_login(stranger)
    assert client.get("/api/v1/hosts/").json()["results"] == []
    assert client.get(f"/api/v1/hosts/{test_host.pk}/").status_code == 404
    assert client.delete(f"/api/v1/hosts/{test_host.pk}/").status_code == 404
    assert client.patch(f"/api/v1/hosts/{test_host.pk}/", {"name": "mine"},
                        content_type="application/json").status_code == 404
    assert Host.objects.get(pk=test_host.pk).name == "testhost"


def test_the_stranger_cannot_register_a_host(client, stranger):
    client.force_login(stranger)
    response = client.post("/api/v1/hosts/", {"name": "mine", "uri": TEST_URI}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert not Host.objects.exists()
    assert AuditEntry.objects.get(action="host.create").outcome == AuditEntry.REFUSED


def test_no_decrypted_key_is_left_on_disk_by_a_connection_test(api, tmp_path, monkeypatch):
    monkeypatch.setattr(manager, "key_dir", tmp_path)
    assert register(api, ssh_key=SECRET_KEY).status_code == 201
    assert register(api, ssh_key=SECRET_KEY, uri="qemu+tcp://127.0.0.1:1/system").status_code == 409
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("probe-")] == []


def test_deleting_a_host_removes_its_decrypted_key(api, tmp_path, monkeypatch):
    monkeypatch.setattr(manager, "key_dir", tmp_path)
    host = Host.objects.get(pk=register(api, ssh_key=SECRET_KEY).json()["id"])
    manager.call(host.target(), lambda conn: conn.getURI())  # The cached connection writes host-<id>.key.
    assert (tmp_path / f"host-{host.pk}.key").exists()
    assert api.delete(f"/api/v1/hosts/{host.pk}/").status_code == 204
    assert list(tmp_path.iterdir()) == []


# One connection per registration, none kept ---------------------------------------------------------

def libvirtd_clients(uri: str = TEST_URI) -> int:
    """How many connections this process holds open to the daemon behind `uri`, as it counts them."""
    import os
    import subprocess

    def run(*args: str) -> str:
        # No check: a client (another test's, another process's) may leave between the list and its info.
        return subprocess.run([*virt_admin(uri), *args], capture_output=True, text=True, timeout=10).stdout

    ids = [line.split()[0] for line in run("srv-clients-list", "libvirtd").splitlines()[2:] if line.strip()]
    infos = [run("client-info", "libvirtd", client) for client in ids]
    return sum(f"unix_process_id: {os.getpid()}\n" in info for info in infos)


def settled_clients(at_most: int) -> int:
    """libvirtd's count once closes still in flight (an earlier test's dropped connections) are done."""
    deadline = time.monotonic() + 3
    while (count := libvirtd_clients()) > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_registering_a_host_opens_one_connection_for_facts_and_domains_and_keeps_none(
        api, test_conn, make_test_domain, opened):
    dom = make_test_domain()
    before = settled_clients(1)  # the session's own connection to the test driver
    response = register(api, name="once")
    assert response.status_code == 201, response.json()
    assert opened == [TEST_URI]
    assert response.json()["facts"]["hypervisor"] == "TEST"
    assert Domain.objects.filter(host_id=response.json()["id"], uuid=dom.UUIDString()).exists()
    assert settled_clients(before) == before  # the probe is closed; nothing cached for the new host
    assert AuditEntry.objects.get(action="host.create").outcome == AuditEntry.OK


def test_editing_a_host_opens_one_connection_and_keeps_none(api, test_conn, make_test_domain, opened):
    host_id = register(api, name="before").json()["id"]
    dom = make_test_domain()
    before = settled_clients(1)
    response = api.patch(f"/api/v1/hosts/{host_id}/", {"description": "edited"}, format="json")
    assert response.status_code == 200, response.json()
    assert opened == [TEST_URI, TEST_URI]  # the registration's probe, then the edit's
    assert Domain.objects.filter(host_id=host_id, uuid=dom.UUIDString()).exists()  # read by the edit's probe
    assert settled_clients(before) == before
