"""What makes the domain list cheap (issue 19) answers exactly what it answered before.

- the search's index (an FTS5 trigram table on SQLite, trigram indexes on PostgreSQL) finds the same rows as
  the plain LIKE it narrows, also after rows are renamed, moved and deleted;
- the list's rows, read as columns and written by `list_rows`, are DomainSerializer's, value for value;
- the SQLite connection a web process keeps open is one per file.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from tests.people import unique
from webvirt.domains.api import LIST_COLUMNS, DomainSerializer, list_rows
from webvirt.domains.filters import search
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db

TEXTS = ["h03-web", "WEB-00", "web", "ab", "été", "ÉTÉ", 'x"q', "100%", "a_b", "--", "zzzz-none", " h03 "]


def plain_search(value: str) -> set[int]:
    """The search as it was before the index: the LIKE alone."""
    value = value.strip()
    rows = Domain.objects.all()
    if value:
        rows = rows.filter(Q(name__icontains=value) | Q(uuid__istartswith=value))
    return set(rows.values_list("pk", flat=True))


@pytest.fixture
def host(db):  # type: ignore[no-untyped-def]
    return Host.objects.create(name=unique("h"), uri="test:///default")


@pytest.fixture
def rows(host):  # type: ignore[no-untyped-def]
    names = [f"bench-h{i % 7:02d}-{('web', 'DB', 'Web')[i % 3]}-{i:04d}" for i in range(300)]
    names += ["été-1", "ÉTÉ-2", 'x"quote', "100% full", "a_b", "aXb", "two--dashes"]
    return Domain.objects.bulk_create(Domain(host=host, uuid=str(uuidlib.uuid4()), name=n) for n in names)


@pytest.mark.parametrize("text", TEXTS)
def test_the_indexed_search_finds_what_the_plain_search_finds(rows, text):
    found = set(search(Domain.objects.all(), text).values_list("pk", flat=True))
    assert found == plain_search(text)


def test_it_finds_a_uuid_by_its_start_in_any_case(rows):
    target = rows[42]
    for text in (target.uuid[:8], target.uuid[:13].upper()):
        assert set(search(Domain.objects.all(), text).values_list("pk", flat=True)) == {target.pk}


def test_the_index_follows_renames_moves_and_deletes(rows, host):
    renamed, moved, gone = rows[10], rows[11], rows[12]
    old_name = renamed.name
    renamed.name = "freshly-renamed-one"
    renamed.save()
    Domain.objects.filter(pk=moved.pk).update(uuid="abcdef01-0000-4000-8000-000000000000")
    Domain.objects.filter(pk=gone.pk).delete()
    Domain.objects.bulk_update([Domain(pk=rows[13].pk, name="bulk-renamed")], ["name"])
    for text, want in [("freshly-renamed", {renamed.pk}), (old_name, set()), ("ABCDEF01", {moved.pk}),
                       (gone.name, set()), ("bulk-renamed", {rows[13].pk})]:
        found = set(search(Domain.objects.all(), text).values_list("pk", flat=True))
        assert found == want == plain_search(text), text


def test_the_index_is_there_after_every_migration():
    """Django rebuilds a SQLite table to alter it, dropping its triggers: a later migration that alters
    Domain must create them again (see migration 0006), or this fails."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'domains_domain'")
            assert {r[0] for r in cursor.fetchall()} >= {"domains_domain_search_insert", "domains_domain_search_delete",
                                                         "domains_domain_search_update"}
        else:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'domains_domain'")
            assert {r[0] for r in cursor.fetchall()} >= {"domain_name_trgm", "domain_uuid_trgm"}


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns"])
def test_list_rows_are_what_the_serializer_writes(rows, host, stranger, zone):
    first, second = rows[0], rows[1]
    now = timezone.now()
    Domain.objects.filter(pk=first.pk).update(
        state="running", reason="booted", vcpus=4, memory_mib=2048, autostart=True, persistent=False,
        graphics="vnc", state_changed=now, owner=stranger, linked=True, expires_at=now + timedelta(days=3),
        addresses=[{"ip": "192.0.2.7", "prefix": 24, "family": "ipv4", "mac": "52:54:00:00:00:01",
                    "sources": ["lease"]}], cpu_percent=12.5, memory_used_mib=1000)
    Domain.objects.filter(pk=second.pk).update(cpu_percent=0, memory_used_mib=None, state_changed=None)
    page = Domain.objects.select_related("host").filter(pk__in=[first.pk, second.pk]).order_by("pk")
    with timezone.override(zone):
        assert list_rows(page.values(*LIST_COLUMNS)) == [DomainSerializer(row).data for row in page]


def test_the_api_list_answers_the_serializers_json(api, rows):
    results = api.get("/api/v1/domains/", {"search": "h03"}).json()["results"]
    ordered = Domain.objects.select_related("host").filter(name__contains="h03").order_by("name", "host__name")
    assert results == [dict(DomainSerializer(row).data) for row in ordered[:50]]


def test_a_web_process_keeps_one_sqlite_connection_per_file(tmp_path):
    from webvirt.sqlitekeep import hold

    path = str(tmp_path / "db.sqlite3")
    assert hold(path) is hold(path) is not None
    assert hold(":memory:") is None
