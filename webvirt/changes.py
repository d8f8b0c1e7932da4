"""Answers kept between requests, valid until the data they were read from changes.

The database keeps a change counter for each table listed in WATCHED (accounts.ChangeCounter: one row, a
column per table). Triggers on the table bump its counter whenever one of its rows is inserted, updated or
deleted, in the same transaction as the change, so a reader sees a new number exactly when it can see the
new data. `memo` remembers an answer together with the counters of the tables it was read from, and gives it
again while they are the same; any write to one of those tables, from any process (the web, the watcher,
the collector, a worker, a `manage.py` command, raw SQL), makes the answer stale at once.

What it is for: the requests that scripts and dashboards repeat (the API's token lookup and domain list).
A kept answer costs one indexed read of the counters instead of the ORM building, compiling, running and
converting its queries: a list request then takes 2-5 ms of CPU instead of 9-15 (bench/list_load.py). The policy is
not skipped: an answer is kept per user (its key includes who asks), and the users table is watched, so a
user made inactive or no longer an administrator gets a new answer.

Rules that keep it right:
- the counter is read before the answer is computed, so an answer is never newer-numbered than its data;
- inside a transaction (`atomic`) nothing is kept or given: that transaction may see its own uncommitted rows,
  and may roll them back;
- the counter starts at a random number whenever its row is (re)made, so a counter emptied with its tables
  (`manage.py flush`, a test's teardown) never repeats a number an earlier answer was kept under;
- PostgreSQL bumps a counter once per transaction, at commit (a deferred trigger), so that two transactions
  never wait on each other for the counters' row while they still hold rows the other one wants. The
  counters share one row for the same reason: two rows, taken in different orders, could deadlock.

The triggers are (re)installed after every `migrate` (post_migrate), because SQLite drops a table's triggers
when Django rebuilds the table to alter it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

T = TypeVar("T")
log = logging.getLogger(__name__)

# Every table a kept answer is read from, each also the name of its counter's column (accounts.ChangeCounter).
WATCHED = ("domains_domain", "hosts_host", "auth_user", "accounts_apitoken")
# The domain list: domains, their hosts' names, and who may see them; the token lookup: tokens and their users.
DOMAIN_LIST = ("domains_domain", "hosts_host", "auth_user")
TOKENS = ("accounts_apitoken", "auth_user")
COUNTER = "accounts_changecounter"
# Kept answers per process, the least recently used dropped first (a domain list page of 50 rows is about
# 50 KB, so at most about 13 MB).
MAX_ENTRIES = 256
# How long a request waits for another thread computing the same answer before it computes it itself.
COMPUTE_WAIT = 5.0

_lock = threading.Lock()
_kept: OrderedDict[Hashable, tuple[tuple[int, ...], Any]] = OrderedDict()
_computing: dict[tuple[Hashable, tuple[int, ...]], threading.Event] = {}
_triggers_checked: bool | None = None  # are all the triggers there? Asked once per process


def version(tables: Iterable[str] = WATCHED) -> tuple[int, ...] | None:
    """The counters of `tables` as this connection sees them now, or None when the row is not there yet
    (nothing has been written since the tables were made or emptied)."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(tables)} FROM {COUNTER} WHERE id = 1")
        row = cursor.fetchone()
    return tuple(row) if row else None


def memo(key: Hashable, compute: Callable[[], T], tables: tuple[str, ...]) -> T:
    """`compute()`'s answer, kept under `key` until one of `tables` (watched ones, all that the answer is read
    from) changes. The key must name everything else the answer depends on (who asks, and what they asked).
    An answer of None is not kept."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block or not _triggers_present(connection):
        return compute()
    current = version(tables)
    if current is None:
        return compute()
    with _lock:
        kept = _kept.get(key)
        if kept is not None and kept[0] == current:
            _kept.move_to_end(key)
            return kept[1]
        # One thread computes a stale answer again; the others that ask meanwhile wait for it (after a
        # change, every busy thread would otherwise compute the same answer at once).
        computing = _computing.get((key, current))
        if computing is None:
            _computing[key, current] = threading.Event()
    if computing is not None:
        computing.wait(COMPUTE_WAIT)
        with _lock:
            kept = _kept.get(key)
        return kept[1] if kept is not None and kept[0] == current else compute()
    try:
        answer = compute()
        if answer is not None:
            with _lock:
                _kept[key] = (current, answer)
                _kept.move_to_end(key)
                while len(_kept) > MAX_ENTRIES:
                    _kept.popitem(last=False)
        return answer
    finally:
        with _lock:
            _computing.pop((key, current)).set()


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

# A fresh row starts at random numbers (see the module's docstring); then every change adds one to its table's.
_NEW_ROW = (f"INSERT INTO {COUNTER} (id, {', '.join(WATCHED)}) "
            f"VALUES (1, {', '.join('%(random)s' for _table in WATCHED)})")
SQLITE_NEW_ROW = _NEW_ROW.replace("INSERT", "INSERT OR IGNORE") % {"random": "abs(random() % 1000000000000)"}
POSTGRESQL_NEW_ROW = _NEW_ROW % {"random": "floor(random() * 1000000000000)::bigint"} + " ON CONFLICT (id) DO NOTHING"

POSTGRESQL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION webvirt_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    flag text := 'webvirt.changed_' || TG_TABLE_NAME;
BEGIN
    -- Once per table and transaction: its other rows' deferred events find the flag set (it ends with the
    -- transaction).
    IF current_setting(flag, true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config(flag, 'yes', true);
        {POSTGRESQL_NEW_ROW};
        EXECUTE format('UPDATE {COUNTER} SET %1$I = %1$I + 1 WHERE id = 1', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$
"""


# The triggers' names: SQLite's, one per table and event; PostgreSQL's, two per table (rows, and TRUNCATE).
SQLITE_EVENTS = ("insert", "update", "delete")
POSTGRESQL_ROWS, POSTGRESQL_TRUNCATE = "webvirt_change", "webvirt_change_truncate"


def _sqlite_trigger(table: str, event: str) -> str:
    return f"webvirt_change_{table}_{event}"


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
                for event in SQLITE_EVENTS:
                    cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {_sqlite_trigger(table, event)} "
                                   f"AFTER {event.upper()} ON {table} BEGIN {SQLITE_NEW_ROW}; "
                                   f"UPDATE {COUNTER} SET {table} = {table} + 1 WHERE id = 1; END")
        elif connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION)
            for table in watched:
                cursor.execute(f"DROP TRIGGER IF EXISTS {POSTGRESQL_ROWS} ON {table}")
                cursor.execute(f"CREATE CONSTRAINT TRIGGER {POSTGRESQL_ROWS} AFTER INSERT OR UPDATE OR DELETE "
                               f"ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                               f"EXECUTE FUNCTION webvirt_change()")
                # TRUNCATE fires no row trigger (flush uses it); a statement trigger, at once, covers it.
                cursor.execute(f"DROP TRIGGER IF EXISTS {POSTGRESQL_TRUNCATE} ON {table}")
                cursor.execute(f"CREATE TRIGGER {POSTGRESQL_TRUNCATE} AFTER TRUNCATE ON {table} "
                               f"FOR EACH STATEMENT EXECUTE FUNCTION webvirt_change()")
        else:
            raise NotImplementedError(f"no change triggers for {connection.vendor}")


def missing(connection: BaseDatabaseWrapper) -> list[str]:
    """The triggers that should be there and are not, as "table: trigger" (empty when all are there)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
            expected = {(table, _sqlite_trigger(table, event)) for table in WATCHED for event in SQLITE_EVENTS}
        else:
            cursor.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger")
            expected = {(table, name) for table in WATCHED for name in (POSTGRESQL_ROWS, POSTGRESQL_TRUNCATE)}
        found = {(table, name) for table, name in cursor.fetchall()}
    return sorted(f"{table}: {name}" for table, name in expected - found)


def install_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver (accounts' AppConfig connects it): the tables exist by then."""
    install(connections[using])
