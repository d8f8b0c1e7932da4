"""The domain API on libvirt's test driver through the daemon."""

from __future__ import annotations

import time
import uuid as uuidlib

import libvirt
import pytest

from tests.conftest import domain_xml
from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.virt.domains import STATES

pytestmark = pytest.mark.django_db


def test_it_lists_domains_from_the_cache_with_filters(api, domain_row):
    web = domain_row("web")
    db = domain_row("db", start=True)
    response = api.get("/api/v1/domains/", {"search": web.name, "host": web.host_id})
    assert response.status_code == 200
    assert [d["name"] for d in response.json()["results"]] == [web.name]
    running = api.get("/api/v1/domains/", {"state": "running", "search": db.name[:6]}).json()["results"]
    assert db.name in {d["name"] for d in running}
    assert set(running[0]) >= {"id", "uuid", "name", "host", "state", "vcpus", "memory_mib", "autostart",
                               "persistent"}


def test_it_finds_a_domain_by_the_start_of_its_uuid(api, domain_row):
    row = domain_row()
    results = api.get("/api/v1/domains/", {"search": row.uuid[:8].upper()}).json()["results"]
    assert [d["uuid"] for d in results] == [row.uuid]


def test_it_starts_and_suspends_a_domain_and_libvirt_agrees(api, domain_row, test_conn):
    row = domain_row()
    assert api.post(f"/api/v1/domains/{row.pk}/start/").json()["state"] == "running"
    assert test_conn.lookupByUUIDString(row.uuid).isActive()
    assert api.post(f"/api/v1/domains/{row.pk}/suspend/").json()["state"] == "paused"
    assert test_conn.lookupByUUIDString(row.uuid).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert AuditEntry.objects.filter(action="domain.suspend", outcome="ok", object_repr=row.name).exists()


def test_it_refuses_an_action_the_state_does_not_allow(api, domain_row):
    row = domain_row()
    response = api.post(f"/api/v1/domains/{row.pk}/suspend/")
    assert response.status_code == 409
    assert "shut off" in response.json()["error"]
    assert AuditEntry.objects.filter(action="domain.suspend", outcome="failed").exists()


# The list ---------------------------------------------------------------------------------------

def cached_rows(host, prefix: str, count: int) -> list[Domain]:  # type: ignore[no-untyped-def]
    """Rows in the state cache only: the list reads nothing else, so no libvirt domain is needed."""
    return Domain.objects.bulk_create(
        Domain(host=host, uuid=str(uuidlib.uuid4()), name=f"{prefix}-{i:03}", state="shutoff" if i % 2 else "running",
               memory_mib=64 * (i + 1), vcpus=1 + i % 4) for i in range(count))


def test_it_paginates_the_list_with_count_next_and_previous(api, test_host):
    prefix = unique("page")
    cached_rows(test_host, prefix, 60)
    first = api.get("/api/v1/domains/", {"search": prefix}).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert (first["count"], len(first["results"]), first["previous"]) == (60, 50, None)
    second = api.get(first["next"]).json()
    assert (len(second["results"]), second["next"]) == (10, None)
    assert second["previous"] is not None
    assert [d["name"] for d in first["results"] + second["results"]] == [f"{prefix}-{i:03}" for i in range(60)]


def test_it_sorts_the_list(api, test_host):
    prefix = unique("sort")
    cached_rows(test_host, prefix, 5)
    names = [d["name"] for d in api.get("/api/v1/domains/", {"search": prefix, "sort": "-name"}).json()["results"]]
    assert names == [f"{prefix}-{i:03}" for i in reversed(range(5))]
    by_memory = api.get("/api/v1/domains/", {"search": prefix, "sort": "-memory"}).json()["results"]
    assert [d["memory_mib"] for d in by_memory] == [320, 256, 192, 128, 64]


def test_it_filters_by_state_and_host_together(api, test_host, hung_host):
    prefix = unique("filt")
    cached_rows(test_host, prefix, 4)
    cached_rows(hung_host, prefix, 3)
    running = api.get("/api/v1/domains/", {"search": prefix, "state": "running", "host": test_host.pk}).json()
    assert running["count"] == 2
    assert {d["host_name"] for d in running["results"]} == {"testhost"}
    assert api.get("/api/v1/domains/", {"search": prefix, "host": hung_host.pk}).json()["count"] == 3


@pytest.mark.parametrize("query", [{"state": "bogus"}, {"sort": "bogus"}, {"host": "abc"}, {"host": "999999"}])
def test_a_bad_filter_answers_400_not_500(api, test_host, query):
    response = api.get("/api/v1/domains/", query)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_a_page_that_does_not_exist_answers_404_json(api, test_host):
    for page in ("abc", "999"):
        response = api.get("/api/v1/domains/", {"page": page})
        assert response.status_code == 404
        assert set(response.json()) == {"error", "code"}


def test_it_shows_one_domain(api, domain_row):
    row = domain_row(memory_mib=512, vcpus=2)
    body = api.get(f"/api/v1/domains/{row.pk}/").json()
    assert (body["uuid"], body["name"], body["host_name"]) == (row.uuid, row.name, "testhost")
    assert (body["state"], body["memory_mib"], body["vcpus"], body["persistent"]) == ("shutoff", 512, 2, True)
    assert body["graphics"] == "vnc"


# Lifecycle --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("running", "suspended", "verb", "after"), [
    (False, False, "start", "running"),
    (True, False, "shutdown", "shutoff"),
    (True, False, "reboot", "running"),
    (True, False, "suspend", "paused"),
    (True, True, "resume", "running"),
    (True, False, "destroy", "shutoff"),
    (True, False, "reset", "running"),
    (True, True, "destroy", "shutoff"),
])
def test_every_lifecycle_action_works_and_libvirt_agrees(api, domain_row, test_conn, running, suspended, verb, after):
    row = domain_row(start=running)
    if suspended:
        test_conn.lookupByUUIDString(row.uuid).suspend()
    response = api.post(f"/api/v1/domains/{row.pk}/{verb}/")
    assert response.status_code == 200
    assert response.json()["state"] == after
    assert STATES[test_conn.lookupByUUIDString(row.uuid).state()[0]] == after
    assert Domain.objects.get(pk=row.pk).state == after
    assert AuditEntry.objects.get(action=f"domain.{verb}").outcome == AuditEntry.OK


@pytest.mark.parametrize(("running", "verb", "sentence"), [
    (True, "start", "is running, so it cannot start. That needs it to be crashed or shut off."),
    (False, "shutdown", "is shut off, so it cannot shut down."),
    (False, "resume", "is shut off, so it cannot resume. That needs it to be paused."),
    (True, "resume", "is running, so it cannot resume."),
    (False, "destroy", "is shut off, so it cannot force off."),
    (False, "reboot", "is shut off, so it cannot reboot."),
    (False, "reset", "is shut off, so it cannot reset."),
])
def test_an_action_the_state_forbids_answers_409_with_a_sentence(api, domain_row, test_conn, running, verb, sentence):
    row = domain_row(start=running)
    response = api.post(f"/api/v1/domains/{row.pk}/{verb}/")
    assert response.status_code == 409
    assert response.json()["code"] == "state"
    assert response.json()["error"].startswith(f"{row.name} {sentence}")
    assert test_conn.lookupByUUIDString(row.uuid).isActive() == running


def test_an_unknown_action_is_not_a_route(api, domain_row):
    row = domain_row()
    assert api.post(f"/api/v1/domains/{row.pk}/explode/").status_code == 404
    assert api.get(f"/api/v1/domains/{row.pk}/start/").status_code == 405


def test_it_turns_autostart_on_and_off(api, domain_row, test_conn):
    row = domain_row()
    response = api.post(f"/api/v1/domains/{row.pk}/autostart/", {"enabled": True}, format="json")
    assert (response.status_code, response.json()["autostart"]) == (200, True)
    assert test_conn.lookupByUUIDString(row.uuid).autostart() == 1
    response = api.post(f"/api/v1/domains/{row.pk}/autostart/", {"enabled": False}, format="json")
    assert response.json()["autostart"] is False
    assert test_conn.lookupByUUIDString(row.uuid).autostart() == 0
    assert [e.action for e in AuditEntry.objects.order_by("id")] == ["domain.autostart_on", "domain.autostart_off"]


def test_autostart_needs_a_value(api, domain_row):
    row = domain_row()
    response = api.post(f"/api/v1/domains/{row.pk}/autostart/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "enabled: This field is required."


def test_a_transient_domain_cannot_autostart(api, test_host, test_conn, forget):
    name = forget(unique("trans"))
    row = api.post("/api/v1/domains/", {"host": test_host.pk, "xml": domain_xml(name), "transient": True},
                   format="json").json()
    response = api.post(f"/api/v1/domains/{row['id']}/autostart/", {"enabled": True}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == f"{name} is transient; only a defined (persistent) domain can autostart."


def test_a_domain_removed_behind_webvirts_back_answers_404(api, domain_row, test_conn):
    row = domain_row()
    test_conn.lookupByUUIDString(row.uuid).undefine()
    response = api.post(f"/api/v1/domains/{row.pk}/start/")
    assert response.status_code == 404
    assert response.json() == {"error": "That domain no longer exists on its host.", "code": "not_found"}


def test_an_action_on_a_host_that_never_answers_answers_409_quickly(api, hung_host):
    row = Domain.objects.create(host=hung_host, uuid=str(uuidlib.uuid4()), name="stranded", state="shutoff")
    started = time.monotonic()
    response = api.post(f"/api/v1/domains/{row.pk}/start/")
    assert time.monotonic() - started < 7
    assert response.status_code == 409
    assert response.json() == {"error": f"Host {hung_host.name} did not answer within 5 s.", "code": "unreachable"}
    hung_host.refresh_from_db()
    assert (hung_host.status, hung_host.status_reason) == ("offline", response.json()["error"])
    assert AuditEntry.objects.get(action="domain.start").outcome == AuditEntry.FAILED


# Undefine ---------------------------------------------------------------------------------------

def test_it_undefines_a_shut_off_domain(api, domain_row, test_conn):
    row = domain_row()
    response = api.delete(f"/api/v1/domains/{row.pk}/")
    assert (response.status_code, response.json()) == (200, {"deleted_volumes": []})
    with pytest.raises(libvirt.libvirtError):
        test_conn.lookupByUUIDString(row.uuid)
    assert not Domain.objects.filter(pk=row.pk).exists()
    assert AuditEntry.objects.get(action="domain.undefine").detail == "no volumes deleted"


def test_it_refuses_to_undefine_a_running_domain(api, domain_row, test_conn):
    row = domain_row(start=True)
    response = api.delete(f"/api/v1/domains/{row.pk}/")
    assert response.status_code == 409
    assert response.json()["error"] == f"{row.name} is running. Force it off before undefining it."
    assert test_conn.lookupByUUIDString(row.uuid).isActive()
    assert Domain.objects.filter(pk=row.pk).exists()


def test_undefining_keeps_the_volumes_unless_asked(api, domain_row, pool_volume, test_conn):
    volume = pool_volume(f"{unique('disk')}.img")
    row = domain_row(disk=volume.path())
    assert api.delete(f"/api/v1/domains/{row.pk}/").json() == {"deleted_volumes": []}
    assert test_conn.storageVolLookupByPath(volume.path()).name() == volume.name()


def test_undefining_with_delete_volumes_deletes_the_disk_volume(api, domain_row, pool_volume, test_conn):
    volume = pool_volume(f"{unique('disk')}.img")
    path = volume.path()
    row = domain_row(disk=path)
    response = api.delete(f"/api/v1/domains/{row.pk}/?delete_volumes=true")
    assert (response.status_code, response.json()) == (200, {"deleted_volumes": [path]})
    with pytest.raises(libvirt.libvirtError):
        test_conn.storageVolLookupByPath(path)
    assert AuditEntry.objects.get(action="domain.undefine").detail == f"deleted volumes: {path}"


def test_undefining_a_transient_domain_stops_it(api, test_host, test_conn, forget):
    name = forget(unique("trans"))
    row = api.post("/api/v1/domains/", {"host": test_host.pk, "xml": domain_xml(name), "transient": True},
                   format="json").json()
    assert api.delete(f"/api/v1/domains/{row['id']}/").status_code == 200
    with pytest.raises(libvirt.libvirtError):
        test_conn.lookupByName(name)


# Define from XML --------------------------------------------------------------------------------

def define(api, host, xml: str, **extra):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/domains/", {"host": host.pk, "xml": xml, **extra}, format="json")


def test_it_defines_a_domain_from_xml(api, test_host, test_conn, forget):
    name = forget(unique("new"))
    response = define(api, test_host, domain_xml(name, memory_mib=384))
    assert response.status_code == 201
    assert (response.json()["name"], response.json()["state"], response.json()["memory_mib"]) == (name, "shutoff", 384)
    dom = test_conn.lookupByName(name)
    assert dom.isPersistent() and not dom.isActive()
    assert Domain.objects.get(pk=response.json()["id"]).uuid == dom.UUIDString()
    assert AuditEntry.objects.get(action="domain.define").object_repr == name


def test_it_creates_a_transient_domain_that_runs(api, test_host, test_conn, forget):
    name = forget(unique("trans"))
    response = define(api, test_host, domain_xml(name), transient=True)
    assert response.status_code == 201
    assert (response.json()["state"], response.json()["persistent"]) == ("running", False)
    dom = test_conn.lookupByName(name)
    assert dom.isActive() and not dom.isPersistent()
    assert AuditEntry.objects.get(action="domain.create").outcome == AuditEntry.OK


def test_a_name_already_taken_answers_409(api, domain_row, test_host, test_conn):
    row = domain_row()
    response = define(api, test_host, domain_xml(row.name))
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert response.json()["error"] == f"A domain named '{row.name}' already exists on this host. Choose another name."
    assert test_conn.lookupByName(row.name).UUIDString() == row.uuid


def test_xml_libvirt_rejects_answers_400_with_its_reason(api, test_host, test_conn):
    name = unique("bad")
    response = define(api, test_host, domain_xml(name).replace("<devices>", "<devices><bogus/>"))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "failed to validate against schema" in response.json()["error"]
    assert name not in test_conn.listDefinedDomains()
    assert AuditEntry.objects.get(action="domain.define").outcome == AuditEntry.FAILED


@pytest.mark.parametrize(("xml", "phrase"), [
    ("<domain type='test'><name>x</name>", "not well-formed"),
    ("this is not xml", "not well-formed"),
    ("<domain type='test'><memory>1024</memory></domain>", "needs a <name>"),
    ("<network><name>n</name></network>", "Expected a <domain> element"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">'
     '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;">]><domain type="test"><name>&lol2;</name></domain>', "DOCTYPE"),
    ('<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     "<domain type='test'><name>&xxe;</name><memory>1024</memory></domain>", "DOCTYPE"),
    ("<!DOCTYPE domain><domain type='test'><name>plain</name><memory>1024</memory></domain>", "DOCTYPE"),
])
def test_bad_or_hostile_xml_answers_400_and_defines_nothing(api, test_host, test_conn, xml, phrase):
    before = set(test_conn.listDefinedDomains())
    response = define(api, test_host, xml)
    assert response.status_code == 400
    assert phrase in response.json()["error"]
    assert set(test_conn.listDefinedDomains()) <= before


def test_define_needs_a_host_that_exists(api, test_host):
    response = api.post("/api/v1/domains/", {"host": 999999, "xml": domain_xml("x")}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"].keys() == {"host"}


# Who may -----------------------------------------------------------------------------------------

def test_a_missing_domain_answers_404_json(api, test_host):
    for method, url in [("get", "/api/v1/domains/999999/"), ("post", "/api/v1/domains/999999/start/"),
                        ("get", "/api/v1/domains/999999/xml/"), ("delete", "/api/v1/domains/999999/")]:
        response = getattr(api, method)(url)
        assert response.status_code == 404, url
        assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_an_anonymous_client_gets_401_or_403(client, domain_row):
    row = domain_row()
    for response in (client.get("/api/v1/domains/"), client.post(f"/api/v1/domains/{row.pk}/start/"),
                     client.get(f"/api/v1/domains/{row.pk}/xml/")):
        assert response.status_code in (401, 403)
        assert set(response.json()) == {"error", "code"}


def test_a_bad_token_is_refused(client, domain_row):
    response = client.get("/api/v1/domains/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code in (401, 403)
    assert response.json()["code"] == "authentication_failed"


def test_the_stranger_sees_an_empty_list_and_404s(client, stranger, domain_row, test_host, test_conn):
    row = domain_row()
    client.force_login(stranger)
    assert client.get("/api/v1/domains/").json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.get(f"/api/v1/domains/{row.pk}/").status_code == 404
    assert client.post(f"/api/v1/domains/{row.pk}/start/").status_code == 404
    assert client.get(f"/api/v1/domains/{row.pk}/xml/").status_code == 404
    assert client.delete(f"/api/v1/domains/{row.pk}/").status_code == 404
    assert not test_conn.lookupByUUIDString(row.uuid).isActive()


def test_the_stranger_cannot_define_on_a_host_it_cannot_see(client, stranger, test_host, test_conn):
    client.force_login(stranger)
    name = unique("sneaky")
    response = client.post("/api/v1/domains/", {"host": test_host.pk, "xml": domain_xml(name)},
                           content_type="application/json")
    assert response.status_code == 404
    assert name not in test_conn.listDefinedDomains()
    assert AuditEntry.objects.get(action="domain.define").outcome == AuditEntry.REFUSED
