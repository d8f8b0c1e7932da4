"""Answers kept between requests, valid until the data they were read from changes.

The database keeps one number, the change counter (accounts.ChangeCounter, a single row). Triggers on the
tables listed in WATCHED bump it whenever one of their rows is inserted, updated or deleted, in the same
transaction as the change, so a reader sees a new number exactly when it can see the new data. `memo`
remembers an answer together with the number it was computed under, and gives it again while the number is
the same; any write to a watched table, from any process (the web, the watcher, the collector, a worker, a
`manage.py` command, raw SQL), makes every kept answer stale at once.

What it is for: the requests that scripts and dashboards repeat (the API's token lookup and domain list).
A kept answer costs one indexed read of the counter instead of the ORM building, compiling, running and
converting its queries: about 1 ms instead of 7 of a list request's CPU (bench/list_load.py). The policy is
not skipped: an answer is kept per user (its key includes who asks), and the users table is watched, so a
user made inactive or no longer an administrator gets a new answer.

Rules that keep it right:
- the counter is read before the answer is computed, so an answer is never newer-numbered than its data;
- inside a transaction (`atomic`) nothing is kept or given: that transaction may see its own uncommitted rows,
  and may roll them back;
- the counter starts at a random number whenever its row is (re)made, so a counter emptied with its tables
  (`manage.py flush`, a test's teardown) never repeats a number an earlier answer was kept under;
- PostgreSQL bumps it once per transaction, at commit (a deferred trigger), so that two transactions never
  wait on each other for the counter while they still hold rows the other one wants.

The triggers are (re)installed after every `migrate` (post_migrate), because SQLite drops a table's triggers
when Django rebuilds the table to alter it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

T = TypeVar("T")
log = logging.getLogger(__name__)

# Every table a kept answer is read from: the domain list (domains, their hosts' names, and who may see
# them), and the token lookup (tokens and their users).
WATCHED = ("domains_domain", "hosts_host", "auth_user", "accounts_apitoken")
COUNTER = "accounts_changecounter"
# Kept answers per process, the least recently used dropped first (a domain list page is about 100 KB).
MAX_ENTRIES = 256

_lock = threading.Lock()
_kept: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
_triggers_checked: bool | None = None  # are all the triggers there? Asked once per process


def version(alias: str = DEFAULT_DB_ALIAS) -> int | None:
    """The change counter as this connection sees it now, or None when it has no row (nothing written yet)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT version FROM {COUNTER} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None


def memo(key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`'s answer, kept under `key` until a watched table changes. The key must name everything
    else the answer depends on (who asks, and what they asked). An answer of None is not kept."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block or not _triggers_present(connection):
        return compute()
    current = version()
    if current is None:
        return compute()
    with _lock:
        kept = _kept.get(key)
        if kept is not None and kept[0] == current:
            _kept.move_to_end(key)
            return kept[1]
    answer = compute()
    if answer is not None:
        with _lock:
            _kept[key] = (current, answer)
            _kept.move_to_end(key)
            while len(_kept) > MAX_ENTRIES:
                _kept.popitem(last=False)
    return answer


def forget() -> None:
    """Drop every kept answer, and ask again whether the triggers are there (tests)."""
    global _triggers_checked
    with _lock:
        _kept.clear()
        _triggers_checked = None


def _triggers_present(connection: BaseDatabaseWrapper) -> bool:
    """Without a trigger, a change would go unseen and a kept answer would stay forever: then keep nothing."""
    global _triggers_checked
    if _triggers_checked is None:
        absent = missing(connection)
        _triggers_checked = not absent
        if absent:
            log.warning("change triggers missing (%s; manage.py migrate installs them): answers are not kept "
                        "between requests", ", ".join(absent))
    return _triggers_checked


# The triggers ---------------------------------------------------------------------------------------------

# A fresh row starts at a random number (see the module's docstring); then every change adds one.
SQLITE_BUMP = (f"INSERT OR IGNORE INTO {COUNTER} (id, version) VALUES (1, abs(random() % 1000000000000)); "
               f"UPDATE {COUNTER} SET version = version + 1 WHERE id = 1;")

POSTGRESQL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION webvirt_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction: its other rows' deferred events find the flag set (it ends with the transaction).
    IF current_setting('webvirt.changed', true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('webvirt.changed', 'yes', true);
        INSERT INTO {COUNTER} (id, version) VALUES (1, floor(random() * 1000000000000)::bigint)
            ON CONFLICT (id) DO UPDATE SET version = {COUNTER}.version + 1;
    END IF;
    RETURN NULL;
END $$
"""


def install(connection: BaseDatabaseWrapper) -> None:
    """Create (or create again) the triggers on every watched table that exists (a partial `migrate` may
    not have made them all yet; the next one installs the rest)."""
    tables = set(connection.introspection.table_names())
    if COUNTER not in tables:
        return
    watched = [table for table in WATCHED if table in tables]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for table in watched:
                for event in ("INSERT", "UPDATE", "DELETE"):
                    cursor.execute(f"CREATE TRIGGER IF NOT EXISTS webvirt_change_{table}_{event.lower()} "
                                   f"AFTER {event} ON {table} BEGIN {SQLITE_BUMP} END")
        elif connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION)
            for table in watched:
                cursor.execute(f"DROP TRIGGER IF EXISTS webvirt_change ON {table}")
                cursor.execute(f"CREATE CONSTRAINT TRIGGER webvirt_change AFTER INSERT OR UPDATE OR DELETE "
                               f"ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                               f"EXECUTE FUNCTION webvirt_change()")
                # TRUNCATE fires no row trigger (flush uses it); a statement trigger, at once, covers it.
                cursor.execute(f"DROP TRIGGER IF EXISTS webvirt_change_truncate ON {table}")
                cursor.execute(f"CREATE TRIGGER webvirt_change_truncate AFTER TRUNCATE ON {table} "
                               f"FOR EACH STATEMENT EXECUTE FUNCTION webvirt_change()")
        else:
            raise NotImplementedError(f"no change triggers for {connection.vendor}")


def missing(connection: BaseDatabaseWrapper) -> list[str]:
    """The triggers that should be there and are not, as "table: trigger" (empty when all are there)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
            expected = {(table, f"webvirt_change_{table}_{event}") for table in WATCHED
                        for event in ("insert", "update", "delete")}
        else:
            cursor.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger")
            expected = {(table, name) for table in WATCHED for name in ("webvirt_change", "webvirt_change_truncate")}
        found = {(table, name) for table, name in cursor.fetchall()}
    return sorted(f"{table}: {name}" for table, name in expected - found)


def install_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver (accounts' AppConfig connects it): the tables exist by then."""
    install(connections[using])
