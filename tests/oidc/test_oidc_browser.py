"""OpenID Connect sign-in in a real browser: a student clicks the login page's button, signs in at the test
provider, and lands back in webvirt signed in, in the group the mapping gives; an administrator's settings
page is seen as it is."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.browser.conftest import RESULTS, log_in, page, shot  # noqa: F401  # the browser tests' own fixtures
from tests.oidc.conftest import Provider

pytestmark = pytest.mark.browser


def test_a_student_signs_in_with_the_provider_button(page, shot, live_server, provider: Provider,  # noqa: F811
                                                      configure) -> None:  # type: ignore[no-untyped-def]
    provider.allow_redirect(f"{live_server.url}/accounts/login/oidc/callback/")
    configure(button_label="Sign in with the school account")
    page.goto("/templates/")  # signed out: to the login page, keeping where to go
    expect(page.get_by_role("link", name="Sign in with the school account")).to_be_visible()
    shot("oidc-login-page")

    # The keyboard alone: Tab from the password form's button to the provider's, Enter.
    page.get_by_role("button", name="Log in").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Sign in with the school account")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"^{re.escape(provider.url)}/accounts/login/"))
    page.get_by_label("Username").fill("student1")
    page.get_by_label("Password").fill("student1-password")
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{live_server.url}/templates/")
    expect(page.locator(".whoami")).to_contain_text("student1")
    user = get_user_model().objects.get(username="student1")
    assert set(user.groups.values_list("name", flat=True)) == {"students"}
    shot("oidc-signed-in")


def test_the_settings_page_as_an_administrator_sees_it(page, log_in, shot, configure) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    configure()
    log_in()
    page.goto("/people/oidc/")
    expect(page.get_by_role("heading", name="OpenID Connect sign-in")).to_be_visible()
    expect(page.get_by_label("Client secret")).to_have_value("")
    expect(page.get_by_text("A secret is set — leave empty to keep it.")).to_be_visible()
    page.get_by_label("Discovery URL").fill("http://127.0.0.1:9/.well-known/openid-configuration")
    page.get_by_label("Client secret").fill("another-secret")
    page.get_by_role("button", name="Check and save").click()
    expect(page.locator(".msg.error")).to_contain_text("Could not connect to 127.0.0.1:9")
    expect(page.get_by_label("Client secret")).to_have_value("")  # never sent back, not even after an error
    page.screenshot(path=str(RESULTS / "pages" / "oidc-settings.png"), full_page=True)
