"""The audit trail: every change leaves an entry, whatever its outcome, and entries never change."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import TEST_URI
from webvirt.accounts.audit import audited
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host
from webvirt.virt.errors import VirtError

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(admin) -> AuditEntry:  # type: ignore[no-untyped-def]
    return AuditEntry.objects.create(user=admin, username="alice", action="domain.start", object_type="domain",
                                     object_id="1", object_repr="web01", address="127.0.0.1", via="ui",
                                     outcome=AuditEntry.OK)


def test_a_successful_action_records_who_what_where_and_how(api, domain_row):
    row = domain_row()
    api.post(f"/api/v1/domains/{row.pk}/start/", REMOTE_ADDR="127.0.0.5")
    entry = AuditEntry.objects.get(action="domain.start")
    assert (entry.username, entry.user.username, entry.via, entry.address) == ("alice", "alice", "api", "127.0.0.5")
    assert (entry.object_type, entry.object_id, entry.object_repr) == ("domain", str(row.pk), row.name)
    assert entry.outcome == AuditEntry.OK and entry.created is not None


def test_a_failed_action_records_the_reason(api, domain_row):
    row = domain_row()
    api.post(f"/api/v1/domains/{row.pk}/resume/")
    entry = AuditEntry.objects.get(action="domain.resume")
    assert entry.outcome == AuditEntry.FAILED
    assert entry.detail == f"{row.name} is shut off, so it cannot resume. That needs it to be paused."


def test_a_refused_action_is_recorded_too(client, stranger):
    client.force_login(stranger)
    client.post("/api/v1/hosts/", {"name": "mine", "uri": TEST_URI}, content_type="application/json")
    entry = AuditEntry.objects.get(action="host.create")
    assert (entry.outcome, entry.username, entry.object_repr) == (AuditEntry.REFUSED, "charlie", "mine")
    assert entry.detail == "You are not allowed to do that."


def test_creating_a_host_records_the_new_object(admin_client, test_conn):
    admin_client.post("/hosts/add/", {"name": "audited", "uri": TEST_URI})
    host = Host.objects.get(name="audited")
    entry = AuditEntry.objects.get(action="host.create")
    assert (entry.object_type, entry.object_id, entry.object_repr, entry.via) == ("host", str(host.pk), "audited", "ui")
    manager.drop(host.target().key)


def test_an_unexpected_error_is_recorded_and_still_raised(admin):
    with pytest.raises(ZeroDivisionError), audited(Actor(admin, "127.0.0.1", "cli"), "host.sync"):
        1 / 0  # noqa: B018
    entry = AuditEntry.objects.get(action="host.sync")
    assert (entry.outcome, entry.detail, entry.via) == (AuditEntry.FAILED, "ZeroDivisionError: division by zero", "cli")


@pytest.mark.parametrize(("raised", "outcome"), [(Denied("No."), AuditEntry.REFUSED),
                                                 (VirtError("Broken."), AuditEntry.FAILED)])
def test_audited_maps_each_failure_to_its_outcome(admin, raised, outcome):
    with pytest.raises(type(raised)), audited(Actor(admin), "x.y"):
        raise raised
    assert AuditEntry.objects.get(action="x.y").outcome == outcome


def test_an_entry_cannot_be_modified(entry):
    entry.outcome = AuditEntry.FAILED
    with pytest.raises(PermissionError):
        entry.save()
    entry.refresh_from_db()
    assert entry.outcome == AuditEntry.OK


def test_an_entry_cannot_be_deleted(entry):
    with pytest.raises(PermissionError):
        entry.delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_api_cannot_modify_or_delete_an_entry(api, entry):
    assert api.put(f"/api/v1/audit/{entry.pk}/", {"outcome": "failed"}, format="json").status_code == 405
    assert api.patch(f"/api/v1/audit/{entry.pk}/", {"outcome": "failed"}, format="json").status_code == 405
    assert api.delete(f"/api/v1/audit/{entry.pk}/").status_code == 405
    assert api.post("/api/v1/audit/", {"action": "forged"}, format="json").status_code == 405
    entry.refresh_from_db()
    assert entry.outcome == AuditEntry.OK and AuditEntry.objects.count() == 1


def test_an_entry_keeps_the_name_of_a_deleted_user(entry, admin):
    admin.delete()
    entry.refresh_from_db()
    assert (entry.user, entry.username) == (None, "alice")


def test_the_api_lists_and_filters_entries(api, entry, admin):
    AuditEntry.objects.create(username="bob", action="host.delete", object_repr="lab", outcome=AuditEntry.FAILED)
    body = api.get("/api/v1/audit/").json()
    assert body["count"] == 2 and set(body["results"][0]) >= {"username", "action", "object_repr", "address",
                                                              "outcome", "created", "via", "detail"}
    assert [e["action"] for e in api.get("/api/v1/audit/", {"action": "domain."}).json()["results"]] == ["domain.start"]
    assert [e["username"] for e in api.get("/api/v1/audit/", {"outcome": "failed"}).json()["results"]] == ["bob"]
    assert api.get("/api/v1/audit/", {"username": "ALICE"}).json()["count"] == 1
    assert api.get("/api/v1/audit/", {"object": "LA"}).json()["count"] == 1


def test_the_stranger_gets_404_from_the_audit_api(client, stranger, entry):
    client.force_login(stranger)
    for url in ("/api/v1/audit/", f"/api/v1/audit/{entry.pk}/"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_the_audit_page_shows_and_filters_entries(admin_client, entry):
    AuditEntry.objects.create(username="bob", action="host.delete", object_repr="lab", outcome=AuditEntry.FAILED)
    page = admin_client.get("/audit/").content.decode()
    assert "domain.start" in page and "host.delete" in page and "127.0.0.1" in page
    filtered = admin_client.get("/audit/", {"username": "bob", "outcome": "failed"})
    assert [e.action for e in filtered.context["page"]] == ["host.delete"]
    assert [e.action for e in admin_client.get("/audit/", {"action": "domain"}).context["page"]] == ["domain.start"]


@pytest.mark.parametrize("query", [{"page": "abc"}, {"page": "999"}, {"outcome": "bogus"}, {"since": "yesterday"},
                                   {"since": "2025-01-01T00:00:00Z"}, {"action": "%"}])
def test_bad_audit_filters_never_answer_500(admin_client, entry, query):
    assert admin_client.get("/audit/", query).status_code == 200


def test_the_stranger_gets_404_from_the_audit_page(client, stranger, entry):
    client.force_login(stranger)
    assert client.get("/audit/").status_code == 404


def test_entries_are_listed_newest_first(admin):
    for action in ("first", "second", "third"):
        AuditEntry.objects.create(username="alice", action=action, outcome=AuditEntry.OK)
    assert [e.action for e in AuditEntry.objects.all()] == ["third", "second", "first"]
    assert get_user_model().objects.count() == 1
