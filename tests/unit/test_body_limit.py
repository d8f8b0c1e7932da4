"""Request bodies have a ceiling, enforced before anything reads them (webvirt.bodylimit).

Every test drives the project's real ASGI application with a hand-written `receive` that counts how
often the application asked for the body, which proves whether the body was read, not only what
the answer was.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from webvirt.asgi import application

MIB = 1024 * 1024
CHUNK = 256 * 1024
# The defaults: 2 MiB everywhere, 64 GiB for administrators' uploads.
SMALL = 2 * MIB


@dataclass
class Exchange:
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    reads: int = 0  # how many body messages the application asked for

    def json(self) -> Any:
        return json.loads(self.body)


def chunks(body: bytes | int) -> list[bytes]:
    """The body (or that many bytes) as the 256 KiB messages a server would pass on."""
    data = b"x" * body if isinstance(body, int) else body
    return [data[start:start + CHUNK] for start in range(0, len(data), CHUNK)] or [b""]


def multipart_file(size: int) -> bytes:
    """A form with only a file of `size` bytes in it (an upload form also needs a host and a pool)."""
    return (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.iso"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * size + b"\r\n--xyz--\r\n")


async def _exchange(method: str, path: str, body: list[bytes], headers: dict[str, str]) -> Exchange:
    result = Exchange()
    pending = list(body)
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not pending:
            await asyncio.Event().wait()  # the body is over; the client waits for the answer
        result.reads += 1
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status, result.headers = message["status"], dict(message.get("headers", []))
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")
            if not message.get("more_body"):
                done.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"host", b"testserver"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    app = asyncio.ensure_future(application(scope, receive, send))
    waiter = asyncio.ensure_future(done.wait())
    finished, _ = await asyncio.wait([app, waiter], timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if not finished:
        app.print_stack()
        raise TimeoutError(f"{method} {path}: no answer within 20 s")
    await asyncio.sleep(0.05)  # let the application finish what it still does after answering
    for task in (app, waiter):
        task.cancel()
    outcome, _ = await asyncio.gather(app, waiter, return_exceptions=True)
    if isinstance(outcome, Exception):
        raise outcome  # the application failed: show why, not only that nothing was answered
    return result


def exchange(method: str, path: str, body: bytes | int, *, declare: bool = True, **headers: str) -> Exchange:
    """Send `body` (or that many bytes), with Content-Length when `declare`, else chunked (no length).

    Header names are keyword arguments: content_type=... is sent as content-type.
    """
    parts = chunks(body)
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    if declare:
        headers["content-length"] = str(sum(map(len, parts)))
    return async_to_sync(_exchange)(method, path, parts, headers)


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}; csrftoken={'c' * 32}"


def as_browser(user: Any) -> dict[str, str]:
    # A valid CSRF pair too, so that an accepted body reaches the view itself.
    return {"cookie": session_cookie(user), "x-csrftoken": "c" * 32,
            "content-type": "multipart/form-data; boundary=xyz"}


@pytest.fixture
def admin_token(admin: Any) -> str:
    """`Authorization: Token <key>` for the administrator, the way scripts authenticate."""
    from webvirt.accounts.tokens import create_token

    return f"Token {create_token(admin)[1]}"


# (a) and (b): anyone, anywhere ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/hosts/", "/no/such/page/", "/static/x.js"])
def test_an_anonymous_3_mib_body_is_refused_unread(transactional_db, path):  # type: ignore[no-untyped-def]
    answer = exchange("POST", path, 3 * MIB)
    assert answer.status == 413
    assert answer.reads == 0  # Content-Length said enough: not one byte was read, nothing was spooled
    assert answer.headers[b"connection"] == b"close"


def test_the_refusal_says_why_as_json_on_the_api_and_as_a_sentence_elsewhere(transactional_db):
    api = exchange("POST", "/api/v1/hosts/", 3 * MIB)
    assert api.headers[b"content-type"] == b"application/json"
    assert api.json() == {"error": "The request body is larger than 2 MiB, the limit for this page. Uploads of "
                                   "ISO images are for administrators, on the upload page.", "code": "too_large"}
    page = exchange("POST", "/domains/", 3 * MIB)
    assert page.headers[b"content-type"].startswith(b"text/plain")
    assert page.body.decode().startswith("The request body is larger than 2 MiB, the limit for this page.")


def test_a_chunked_body_without_length_is_cut_off_as_soon_as_it_passes_the_limit(transactional_db):
    answer = exchange("POST", "/api/v1/hosts/", 3 * MIB, declare=False)
    assert answer.status == 413
    assert answer.json()["code"] == "too_large"
    # 2 MiB is 8 chunks of 256 KiB: the 9th passes the limit, and nothing after it is asked for.
    assert answer.reads == SMALL // CHUNK + 1


def test_the_limit_is_the_last_byte_allowed(transactional_db):
    assert exchange("POST", "/api/v1/hosts/", SMALL + 1).status == 413
    assert exchange("POST", "/api/v1/hosts/", SMALL + 1, declare=False).status == 413
    at_limit = exchange("POST", "/api/v1/hosts/", SMALL, content_type="application/json")
    assert at_limit.status in (401, 403)  # the API's own answer to an anonymous client: the body went through
    assert at_limit.reads == SMALL // CHUNK


# (c) and (d): the upload routes ----------------------------------------------------------------------------

def test_a_non_administrators_big_upload_is_refused(transactional_db, stranger):  # type: ignore[no-untyped-def]
    headers = as_browser(stranger)
    for path in ("/install/upload/", "/api/v1/uploads/", "/storage/pools/1:x/upload/"):
        declared = exchange("POST", path, 3 * MIB, **headers)
        assert (declared.status, declared.reads) == (413, 0), path
        chunked = exchange("POST", path, 3 * MIB, declare=False, **headers)
        assert (chunked.status, chunked.reads) == (413, SMALL // CHUNK + 1), path
    assert "Uploads of ISO images are for administrators" in declared.body.decode()


def test_an_anonymous_big_upload_is_refused(transactional_db):
    answer = exchange("POST", "/api/v1/uploads/", 3 * MIB, authorization="Token not-a-token")
    assert (answer.status, answer.reads) == (413, 0)


def test_an_administrators_upload_over_the_small_limit_reaches_the_view(transactional_db, admin, admin_token):  # type: ignore[no-untyped-def]
    form = multipart_file(3 * MIB)
    by_token = exchange("POST", "/api/v1/uploads/", form, authorization=admin_token,
                        content_type="multipart/form-data; boundary=xyz")
    # The view read it all, and answers about the form's content (no host, no pool), not its size.
    assert by_token.status == 400, by_token.body
    assert by_token.json()["fields"].keys() == {"host", "pool"}  # the file itself was taken
    assert by_token.reads == len(chunks(form))
    by_session = exchange("POST", "/install/upload/", form, declare=False, **as_browser(admin))
    # The upload page again, saying what is wrong with the form (here: no host registered yet).
    assert by_session.status == 200 and b"Add a host first." in by_session.body, by_session.body[:300]
    assert by_session.reads == len(chunks(form))


def test_an_administrators_upload_over_the_upload_limit_is_refused(transactional_db, admin_token, settings):  # type: ignore[no-untyped-def]
    settings.WEBVIRT_MAX_UPLOAD_BYTES = 4 * MIB
    answer = exchange("POST", "/api/v1/uploads/", 5 * MIB, authorization=admin_token)
    assert (answer.status, answer.reads) == (413, 0)
    assert answer.json()["error"] == ("The upload is larger than 4 MiB, the largest this server accepts "
                                      "(WEBVIRT_MAX_UPLOAD_BYTES).")
    chunked = exchange("POST", "/api/v1/uploads/", 5 * MIB, declare=False, authorization=admin_token)
    assert (chunked.status, chunked.reads) == (413, 4 * MIB // CHUNK + 1)


def test_a_big_body_to_a_page_that_is_not_an_upload_is_refused_even_for_an_administrator(
        transactional_db, admin_token):  # type: ignore[no-untyped-def]
    answer = exchange("PATCH", "/api/v1/hosts/1/", 3 * MIB, authorization=admin_token)
    assert (answer.status, answer.reads) == (413, 0)


# (e): everything else is as it was ------------------------------------------------------------------------

def test_ordinary_requests_are_answered_as_before(transactional_db, admin):  # type: ignore[no-untyped-def]
    # A regression guard (it passes without the limit too): pages, the API and a 1.5 MiB body, the
    # size of a large XML edit, are untouched.
    page = exchange("GET", "/accounts/login/", 0, declare=False)
    assert page.status == 200 and b"<form" in page.body
    assert exchange("GET", "/api/v1/hosts/", 0, declare=False).status in (401, 403)
    xml_sized = exchange("POST", "/api/v1/hosts/", 3 * MIB // 2, content_type="application/json")
    assert xml_sized.status in (401, 403) and xml_sized.reads == len(chunks(3 * MIB // 2))
