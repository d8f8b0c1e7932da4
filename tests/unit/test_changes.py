"""Kept answers (webvirt.changes): the database's change counter, and the API answers kept under it.

Transactional tests, on both databases: kept answers are used only outside a transaction, so these tests
commit what they write, as the web process's requests do. They check that every write to a watched table
(through the ORM, a bulk update and raw SQL) moves the counter, that a rolled-back one does not, and that
what the API answers from a kept answer changes as soon as the data does: a revoked token, a deactivated
user, an administrator made an ordinary user, a domain's new state, a renamed host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from webvirt import changes
from webvirt.accounts.models import ApiToken
from webvirt.accounts.tokens import create_token
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


@pytest.fixture(autouse=True)
def nothing_kept() -> Iterator[None]:
    changes.forget()
    yield
    changes.forget()


@pytest.fixture
def host() -> Host:
    return Host.objects.create(name="h1", uri="test:///default", status=Host.ONLINE)


def domain(host: Host, name: str, **fields: object) -> Domain:
    return Domain.objects.create(host=host, uuid=f"00000000-0000-0000-0000-{len(name):04d}{name[-8:]:>08}",
                                 name=name, **fields)


def client_for(user: object) -> APIClient:
    _token, key = create_token(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def names(client: APIClient, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/domains/{query}")
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


def moved(action) -> list[str]:  # type: ignore[no-untyped-def]
    """The tables whose counters `action` moved."""
    before = changes.version()
    action()
    after = changes.version()
    assert before is not None and after is not None
    return [table for table, old, new in zip(changes.WATCHED, before, after, strict=True) if old != new]


def test_the_triggers_are_installed_on_every_watched_table():
    assert changes.missing(connection) == []


def test_every_write_to_a_watched_table_moves_the_counter(host):
    user = User.objects.create(username="carol")
    row = domain(host, "web-1")
    token, _key = create_token(user)
    domains, hosts, users, tokens = changes.WATCHED
    assert moved(lambda: Domain.objects.filter(pk=row.pk).update(state="running")) == [domains]
    assert moved(lambda: Domain.objects.bulk_create([Domain(host=host, uuid="u2", name="web-2")])) == [domains]
    assert moved(lambda: Host.objects.filter(pk=host.pk).update(name="h2")) == [hosts]
    assert moved(lambda: User.objects.filter(pk=user.pk).update(is_active=False)) == [users]
    assert moved(lambda: ApiToken.objects.filter(pk=token.pk).delete()) == [tokens]
    with connection.cursor() as cursor:  # not only the ORM: any writer, a raw one too
        assert moved(lambda: cursor.execute("UPDATE domains_domain SET vcpus = 4")) == [domains]
    assert moved(lambda: Domain.objects.filter(pk=row.pk).delete()) == [domains]
    assert moved(lambda: Group.objects.create(name="students")) == []  # a table no kept answer reads


def test_a_rolled_back_write_leaves_the_counter(host):
    domain(host, "web-1")
    before = changes.version()
    with pytest.raises(RuntimeError), transaction.atomic():
        Domain.objects.update(state="running")
        raise RuntimeError
    assert changes.version() == before


def test_many_rows_in_one_transaction_move_it_and_it_never_repeats_after_a_flush(host):
    before = changes.version()
    with transaction.atomic():
        for n in range(20):
            domain(host, f"web-{n}")
    assert changes.version() != before
    call_command("flush", "--noinput", verbosity=0)
    assert changes.version() is None or changes.version() != before
    Host.objects.create(name="again", uri="test:///default")
    assert changes.version() is not None


def test_memo_keeps_an_answer_until_a_watched_table_changes(host):
    row = domain(host, "web-1")
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return Domain.objects.count()

    def kept(key: str = "n") -> int:
        return changes.memo(key, count, changes.DOMAIN_LIST)

    assert kept() == 1 and kept() == 1 and len(calls) == 1
    Domain.objects.filter(pk=row.pk).update(state="running")
    assert kept() == 1 and len(calls) == 2
    assert kept("other key") == 1 and len(calls) == 3
    ApiToken.objects.all().delete()  # a table the answer is not read from: still kept
    create_token(User.objects.create(username="carol"))  # ... but users are
    assert kept() == 1 and len(calls) == 4
    ApiToken.objects.all().delete()
    assert kept() == 1 and len(calls) == 4


def test_after_a_change_one_thread_computes_and_the_others_wait_for_its_answer(host):
    domain(host, "web-1")
    calls: list[str] = []
    answers: list[int] = []

    def slow() -> int:
        calls.append(threading.current_thread().name)
        time.sleep(0.3)
        return len(calls)

    def ask() -> None:
        try:
            answers.append(changes.memo("slow", slow, changes.DOMAIN_LIST))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and answers == [1, 1, 1, 1]


def test_an_answer_that_fails_is_not_kept_and_the_next_request_tries_again(host, admin):
    domain(host, "web-1")

    def fail() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        changes.memo("fails", fail, changes.DOMAIN_LIST)
    assert changes.memo("fails", lambda: 1, changes.DOMAIN_LIST) == 1
    client = client_for(admin)
    for _ in range(2):  # a refused filter is the request's own error, not a kept answer
        response = client.get("/api/v1/domains/?state=bogus")
        assert response.status_code == 400 and "state" in response.json()["error"]


def test_memo_keeps_nothing_inside_a_transaction_or_of_none(host):
    domain(host, "web-1")
    calls: list[int] = []
    with transaction.atomic():
        changes.memo("n", lambda: calls.append(1) or 1, changes.WATCHED)
        changes.memo("n", lambda: calls.append(1) or 1, changes.WATCHED)
    assert len(calls) == 2
    changes.memo("none", lambda: calls.append(1), changes.WATCHED)
    changes.memo("none", lambda: calls.append(1), changes.WATCHED)
    assert len(calls) == 4


def test_without_its_triggers_memo_keeps_nothing_until_migrate_installs_them_again(host):
    domain(host, "web-1")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER webvirt_change_hosts_host_update")
        else:
            cursor.execute("DROP TRIGGER webvirt_change ON hosts_host")
    calls: list[int] = []
    changes.memo("n", lambda: calls.append(1) or 1, changes.WATCHED)
    changes.memo("n", lambda: calls.append(1) or 1, changes.WATCHED)
    assert len(calls) == 2
    call_command("migrate", verbosity=0)  # nothing to migrate, and the triggers are back
    changes.forget()
    assert changes.missing(connection) == []
    assert moved(lambda: Host.objects.update(name="renamed")) == ["hosts_host"]


def test_the_api_list_follows_every_change_of_its_data(host, admin, stranger):
    domain(host, "web-1", owner=stranger)
    domain(host, "web-2")
    as_admin, as_stranger = client_for(admin), client_for(stranger)
    assert names(as_admin) == ["web-1", "web-2"] and names(as_admin) == ["web-1", "web-2"]
    assert names(as_stranger) == ["web-1"]  # kept per user: the stranger sees only theirs

    Domain.objects.filter(name="web-2").update(state="running")
    assert as_admin.get("/api/v1/domains/?state=running").json()["count"] == 1
    assert as_admin.get("/api/v1/domains/").json()["results"][1]["state"] == "running"
    Host.objects.filter(pk=host.pk).update(name="renamed")
    assert {row["host_name"] for row in as_admin.get("/api/v1/domains/").json()["results"]} == {"renamed"}
    Domain.objects.filter(name="web-2").update(owner=stranger)
    assert names(as_stranger) == ["web-1", "web-2"]
    User.objects.filter(pk=admin.pk).update(is_staff=False, is_superuser=False)
    assert names(as_admin) == []  # no longer an administrator: no domain is theirs


def test_the_api_list_is_kept_per_time_zone(host, admin):
    domain(host, "web-1", state_changed=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    client = client_for(admin)

    def changed() -> str:
        return str(client.get("/api/v1/domains/").json()["results"][0]["state_changed"])

    assert changed() == "2026-12-01T12:00:00Z" and changed() == "2026-12-01T12:00:00Z"
    with timezone.override("Europe/Berlin"):
        assert changed() == "2026-12-01T13:00:00+01:00"


def test_a_kept_token_stops_working_at_once(admin):
    client = client_for(admin)
    assert client.get("/api/v1/domains/").status_code == 200
    assert client.get("/api/v1/domains/").status_code == 200
    User.objects.filter(pk=admin.pk).update(is_active=False)
    assert client.get("/api/v1/domains/").status_code == 401
    User.objects.filter(pk=admin.pk).update(is_active=True)
    assert client.get("/api/v1/domains/").status_code == 200
    ApiToken.objects.all().delete()
    assert client.get("/api/v1/domains/").status_code == 401


def test_two_transactions_waiting_on_each_others_rows_both_commit(host):
    """PostgreSQL bumps the counter at commit. Bumped at each statement instead, the first transaction would
    hold the counter while it waits for a row the second holds, and the second would wait for the counter:
    a deadlock. SQLite takes one writer at a time anyway."""
    a, b, c = domain(host, "web-1"), domain(host, "web-2"), domain(host, "web-3")
    outcomes: list[str] = []

    def write(order: list[Domain]) -> None:
        try:
            with transaction.atomic():
                for row in order:
                    Domain.objects.filter(pk=row.pk).update(vcpus=2)
                    time.sleep(0.3)
            outcomes.append("committed")
        except Exception as exc:  # the test reports whatever went wrong
            outcomes.append(repr(exc))
        finally:
            connections.close_all()

    before = changes.version()
    threads = [threading.Thread(target=write, args=([a, b],)), threading.Thread(target=write, args=([b, c],))]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(30)
    assert outcomes == ["committed", "committed"]
    assert changes.version() != before
