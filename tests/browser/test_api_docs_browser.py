"""The API docs render in a browser that cannot reach the internet: Swagger UI comes from this site."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, expect

pytestmark = pytest.mark.browser


def test_swagger_ui_renders_with_no_internet(page, log_in):  # type: ignore[no-untyped-def]
    refused: list[str] = []

    def only_this_machine(route: Route) -> None:
        # Anything but the live server on 127.0.0.1 is cut off, as on a machine without internet.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_machine)
    log_in()
    page.goto("/api/v1/docs/")
    ui = page.locator(".swagger-ui")
    # The operations list: one section per tag, and the domain actions inside it.
    expect(ui.locator(".opblock-tag", has_text="domains").first).to_be_visible()
    expect(ui.get_by_text("/api/v1/domains/{id}/start/", exact=True)).to_be_visible()
    assert refused == [], f"the docs page tried to load from elsewhere: {refused}"
