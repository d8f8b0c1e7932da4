"""Bad API tokens on WebSockets count as failures for the client's address, as on the REST API, and a
throttled address is refused on both, even with a valid token (events/auth.py, accounts/throttle.py).

A real web server (uvicorn) on the test database and this run's Redis counters; clients connect from
127.0.0.4 (the address being throttled) or 127.0.0.5 (anyone else).
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests import live
from webvirt import kv
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.tokens import create_token

LIMIT = 10
HERE, ELSEWHERE = "127.0.0.4", "127.0.0.5"


def _forget_counts() -> None:
    for key in kv.client().scan_iter(f"{settings.REDIS_PREFIX}:authfail:*"):
        kv.client().delete(key)


@pytest.fixture
def web(transactional_db, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _forget_counts()
    process, url = live.start_web(tmp_path)
    yield url
    process.stop()
    _forget_counts()


def events_socket(url: str, token: str, source: str) -> int | None:
    """Open /ws/events/ with `token` from the local address `source`: None if it opened, else the HTTP
    status its handshake was refused with."""
    try:
        with connect(f"{url.replace('http://', 'ws://')}/ws/events/", open_timeout=5, source_address=(source, 0),
                     additional_headers={"Authorization": f"Token {token}"}) as ws:
            ws.recv(timeout=5)  # the hello: the socket is really open
            return None
    except InvalidStatus as exc:
        return exc.response.status_code


def api_status(url: str, token: str, source: str) -> int:
    """The status of `GET /api/v1/` with `token` from the local address `source`."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/api/v1/", headers={"Authorization": f"Token {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_bad_tokens_on_sockets_are_throttled_like_the_apis(web, stranger):  # type: ignore[no-untyped-def]
    _, good = create_token(stranger, name="socket")
    assert events_socket(web, good, HERE) is None  # a valid token opens it before any failure

    for n in range(LIMIT):
        assert events_socket(web, f"bad-{n}", HERE) == 403
    # Now even the valid token is refused from that address, and the refusal is audited once.
    assert events_socket(web, good, HERE) == 403
    assert events_socket(web, good, HERE) == 403
    entry = AuditEntry.objects.get(action="token.throttled")
    assert (entry.outcome, entry.address, entry.via) == (AuditEntry.REFUSED, HERE, "ws")
    # Another address is not held back by this one's failures.
    assert events_socket(web, good, ELSEWHERE) is None


@pytest.mark.django_db(transaction=True)
def test_socket_and_api_failures_add_up_in_one_count(web, stranger):  # type: ignore[no-untyped-def]
    _, good = create_token(stranger, name="socket")
    for n in range(LIMIT // 2):
        assert api_status(web, f"bad-{n}", HERE) == 401
    for n in range(LIMIT - LIMIT // 2):
        assert events_socket(web, f"bad-socket-{n}", HERE) == 403
    # Ten failures in all: the address is throttled on both ways in.
    assert api_status(web, good, HERE) == 429
    assert events_socket(web, good, HERE) == 403
    assert api_status(web, good, ELSEWHERE) == 200
