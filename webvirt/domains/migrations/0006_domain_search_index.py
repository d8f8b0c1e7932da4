"""An index for the list's search (a name containing the text, or a UUID starting with it), on both databases.

PostgreSQL: trigram indexes (pg_trgm) on the very expressions Django's icontains and istartswith compare,
UPPER(name::text) and UPPER(uuid::text), so `LIKE UPPER('%text%')` is an index scan instead of a scan of
every row. Without the pending list (fastupdate off), a domain added is in the index at once: with it, rows
added in bulk (a host's first listing) were scanned one by one until the next vacuum. SQLite: an FTS5 table with the trigram tokenizer over name and uuid, kept up to date by
triggers on domains_domain; webvirt.domains.filters asks it for candidates and then applies the same
LIKE as before to them, so the answer is the same rows. (Django rebuilds a SQLite table to alter it,
which drops its triggers: a later migration that alters Domain must create them again, and
tests/unit/test_domain_search.py fails until it does.)
"""

from django.db import migrations

POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX domain_name_trgm ON domains_domain USING gin (UPPER(name::text) gin_trgm_ops) WITH (fastupdate = off)",
    "CREATE INDEX domain_uuid_trgm ON domains_domain USING gin (UPPER(uuid::text) gin_trgm_ops) WITH (fastupdate = off)",
]
POSTGRESQL_REVERSE = ["DROP INDEX IF EXISTS domain_name_trgm", "DROP INDEX IF EXISTS domain_uuid_trgm"]

SQLITE = [
    "CREATE VIRTUAL TABLE domains_domain_search USING fts5(name, uuid, content='domains_domain', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER domains_domain_search_insert AFTER INSERT ON domains_domain BEGIN "
    "INSERT INTO domains_domain_search(rowid, name, uuid) VALUES (new.id, new.name, new.uuid); END",
    "CREATE TRIGGER domains_domain_search_delete AFTER DELETE ON domains_domain BEGIN "
    "INSERT INTO domains_domain_search(domains_domain_search, rowid, name, uuid) "
    "VALUES ('delete', old.id, old.name, old.uuid); END",
    "CREATE TRIGGER domains_domain_search_update AFTER UPDATE OF id, name, uuid ON domains_domain BEGIN "
    "INSERT INTO domains_domain_search(domains_domain_search, rowid, name, uuid) "
    "VALUES ('delete', old.id, old.name, old.uuid); "
    "INSERT INTO domains_domain_search(rowid, name, uuid) VALUES (new.id, new.name, new.uuid); END",
    "INSERT INTO domains_domain_search(domains_domain_search) VALUES ('rebuild')",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS domains_domain_search_insert",
    "DROP TRIGGER IF EXISTS domains_domain_search_delete",
    "DROP TRIGGER IF EXISTS domains_domain_search_update",
    "DROP TABLE IF EXISTS domains_domain_search",
]


def run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def apply(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("domains", "0005_domain_cpu_percent_domain_memory_used_mib")]

    operations = [
        migrations.RunPython(run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
                             run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE})),
    ]
