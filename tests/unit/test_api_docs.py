"""The API docs page: Swagger UI from our own static files (no CDN), and only for people who log in."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

DOCS = "/api/v1/docs/"
SCHEMA = "/api/v1/schema/"


class _Resources(HTMLParser):
    """Every URL the page makes the browser load: script sources, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")


def resources(html: str) -> list[str]:
    parser = _Resources()
    parser.feed(html)
    return parser.urls


async def _asgi_get(path: str) -> tuple[int, bytes]:
    """GET `path` from the project's real ASGI application (the static files handler included)."""
    from webvirt.asgi import application

    scope: dict[str, Any] = {"type": "http", "http_version": "1.1", "method": "GET", "path": path,
                             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
                             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000),
                             "server": ("testserver", 80)}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], body


def asgi_get(path: str) -> tuple[int, bytes]:
    return async_to_sync(_asgi_get)(path)


def test_the_docs_page_loads_nothing_from_another_origin(admin_client):
    response = admin_client.get(DOCS)
    assert response.status_code == 200
    html = response.content.decode()
    urls = resources(html)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
    assert any(u.endswith("swagger-ui.css") for u in urls), urls
    for url in urls:
        # Same origin: a path on this site, never a scheme or a protocol-relative "//host/...".
        assert url.startswith("/") and not url.startswith("//"), url
    assert "cdn" not in html.lower()
    assert "https://" not in " ".join(urls)


def test_the_docs_pages_static_files_are_served_by_the_app(admin_client):
    urls = resources(admin_client.get(DOCS).content.decode())
    for url in urls:
        status, body = asgi_get(url)
        assert status == 200, url
        # The very file the sidecar package ships, found by the staticfiles finders.
        source = finders.find(url.removeprefix(settings.STATIC_URL))
        assert source and body == Path(source).read_bytes(), url
    bundle = next(u for u in urls if u.endswith("swagger-ui-bundle.js"))
    assert b"SwaggerUIBundle" in asgi_get(bundle)[1]


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(DOCS)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/api/v1/docs/")


def test_the_schema_is_refused_to_anonymous_clients():
    assert APIClient().get(SCHEMA).status_code == 401
    assert APIClient().get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json").status_code == 401


def test_a_logged_in_user_reads_the_docs_and_the_schema(client, stranger):
    """Any account may read them (non-staff users too): the schema describes, the policy decides."""
    client.force_login(stranger)
    assert client.get(DOCS).status_code == 200
    response = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/v1/domains/" in response.json()["paths"]
