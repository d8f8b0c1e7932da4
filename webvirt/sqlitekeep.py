"""One idle SQLite connection held for the life of a process, so that closing the others does not checkpoint.

With SQLite in WAL mode, closing the *last* connection to the file checkpoints the WAL into the database and
deletes the -wal and -shm files, and the next connection makes them anew: measured at about 2-4 ms of a list
request (bench/list_load.py) when every request opened and closed its own connection. Requests now keep their
thread's connection (webvirt.handler), but connections are still closed: when they grow old,
after an error, and in processes whose threads come and go (WebSocket consumers, a job's helper threads).
While this process keeps one connection open, those closes are never the last: SQLite checkpoints on its own
schedule (every 1,000 pages written) and the files stay. The held connection reads once, to join the WAL, and
never again; it takes no lock between statements, so writers (here or in the workers) are never held up.

Installed as the first middleware: Django builds the middleware chain once per process, before the first
request; this one opens the connection and then takes itself out of the chain (MiddlewareNotUsed), so it
costs requests nothing. On PostgreSQL (connections come from a pool) it does nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from django.core.exceptions import MiddlewareNotUsed
from django.db import connections
from django.http import HttpRequest, HttpResponse

_held: dict[str, sqlite3.Connection] = {}


def hold(name: str) -> sqlite3.Connection | None:
    """Open (once per file) and keep a connection to the SQLite database `name`; None for in-memory ones."""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    if name not in _held:
        conn = sqlite3.connect(name, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # joins the WAL (maps its -shm)
        _held[name] = conn
    return _held[name]


class KeepSQLiteOpen:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        database = connections["default"].settings_dict
        if database["ENGINE"].endswith("sqlite3"):
            hold(str(database["NAME"]))
        raise MiddlewareNotUsed
