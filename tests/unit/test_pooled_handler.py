"""The web process's HTTP handler (webvirt.handler): each request's synchronous work in one call on a fixed pool.

The tests drive a real PooledHandler, with the project's middleware, through ASGI messages, on views of their
own (this module is the URLconf). They check what the handler promises over Django's own: a request starts,
runs and ends in one pool thread; no more requests run at once than the pool has threads; SQLite connections
stay open between requests (PostgreSQL's go back to the process's pool); and what Django's handler allowed
still works: async code called from a view, and streaming answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from webvirt.handler import PooledHandler

pytestmark = pytest.mark.django_db(transaction=True)

seen: dict[str, Any] = {}
running = {"now": 0, "most": 0}
count_lock = threading.Lock()


def where(request: HttpRequest) -> HttpResponse:
    seen["view"] = threading.current_thread().name
    return HttpResponse("here")


def busy(request: HttpRequest) -> HttpResponse:
    with count_lock:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
    time.sleep(0.2)
    with count_lock:
        running["now"] -= 1
    return HttpResponse("done")


def query(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse(str(id(connection.connection)))


def calls_async(request: HttpRequest) -> HttpResponse:
    async def later() -> str:
        await asyncio.sleep(0.01)
        return "from the event loop"

    return HttpResponse(async_to_sync(later)())


def streams(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    response = StreamingHttpResponse(parts())
    response._resource_closers.append(lambda: seen.__setitem__("closed", threading.current_thread().name))
    return response


# Under /api/, which the login middleware leaves to the view.
urlpatterns = [path("api/where", where), path("api/busy", busy), path("api/query", query),
               path("api/async", calls_async), path("api/stream", streams)]


@pytest.fixture(autouse=True)
def these_views(settings):  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = __name__
    seen.clear()
    running.update(now=0, most=0)


async def _get(handler: PooledHandler, url: str) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": url, "raw_path": url.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    answer: dict[str, Any] = {"body": b""}
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked:
            await asyncio.Event().wait()  # the client sent its request and waits
        asked = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    await asyncio.wait_for(handler(scope, receive, send), timeout=20)
    return answer["status"], answer["body"]


def get(handler: PooledHandler, *urls: str) -> list[tuple[int, bytes]]:
    """GET every URL at once, as that many clients would."""
    async def all_at_once() -> list[tuple[int, bytes]]:
        return list(await asyncio.gather(*(_get(handler, url) for url in urls)))

    return async_to_sync(all_at_once)()


@pytest.fixture
def handler():  # type: ignore[no-untyped-def]
    made = PooledHandler(2)
    yield made
    made.pool.shutdown(wait=True)


def test_a_request_starts_runs_and_ends_in_one_thread_of_the_pool(handler):
    def record(name: str):  # type: ignore[no-untyped-def]
        return lambda **_: seen.__setitem__(name, threading.current_thread().name)

    started, finished = record("started"), record("finished")
    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        assert get(handler, "/api/where") == [(200, b"here")]
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert seen["started"] == seen["view"] == seen["finished"]
    assert seen["view"].startswith("web")


def test_no_more_requests_run_at_once_than_the_pool_has_threads(handler):
    answers = get(handler, *["/api/busy"] * 6)
    assert answers == [(200, b"done")] * 6
    assert running["most"] == 2


def test_a_thread_keeps_its_sqlite_connection_and_gives_a_postgresql_one_back():
    one = PooledHandler(1)
    try:
        (status, first), = get(one, "/api/query")
        (_status, second), = get(one, "/api/query")
        still_open = one.pool.submit(lambda: connections["default"].connection is not None).result()
        one.pool.submit(connections.close_all).result()
    finally:
        one.pool.shutdown(wait=True)
    assert status == 200
    assert connections["default"].settings_dict["CONN_MAX_AGE"] == 0  # other threads close theirs after use
    if connection.vendor == "sqlite":
        assert first == second and still_open  # opened once, used by both requests
    else:
        assert not still_open  # back in the process's pool after each request


def test_a_view_may_call_async_code_on_the_event_loop(handler):
    assert get(handler, "/api/async") == [(200, b"from the event loop")]


def test_a_streaming_answer_is_sent_whole_and_then_closed(handler):
    assert get(handler, "/api/stream") == [(200, b"one two three")]
    assert seen["closed"].startswith("web")
