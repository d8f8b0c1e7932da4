"""An administrator gives a template cloud-init seeds on its edit page, in a real browser; a user who may
clone it is then asked for an optional password."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.browser.test_self_service import exam_template  # noqa: F401  (a fixture)
from webvirt.catalog.models import Template

pytestmark = pytest.mark.browser
PASSWORD = "bob-password-1"


def test_an_administrator_turns_on_seeds_and_a_user_is_offered_a_password(  # type: ignore[no-untyped-def]
        page, log_in, shot, exam_template):  # noqa: F811
    log_in()
    page.goto(f"/templates/{exam_template.pk}/edit/")
    expect(page.get_by_role("heading", name="cloud-init")).to_be_visible()
    page.get_by_label("Cloud-init seed").check()
    page.get_by_label("User-data").fill("#cloud-config\nruncmd: [echo one\n")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".field.invalid small.err")).to_contain_text("not valid YAML: line 2")
    shot("template-cloud-init-error")
    assert not Template.objects.get(pk=exam_template.pk).cloud_init

    page.get_by_label("User-data").fill("#cloud-config\nruncmd:\n  - echo one\n")
    page.get_by_label("Login user").fill("student")
    page.get_by_label("Owners may set a password").check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(rf"/templates/{exam_template.pk}/$"))
    expect(page.locator("#cloud-init")).to_contain_text("your SSH keys for student, a password if you give one")
    expect(page.locator("#sealed")).to_have_text("no")
    shot("template-cloud-init")

    bob = get_user_model().objects.create_user("bob", "", PASSWORD)
    exam_template.users.add(bob)
    page.context.clear_cookies()  # signed out: sign in as bob
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))
    page.goto(f"/templates/{exam_template.pk}/")
    password = page.locator("input[name=password]")
    expect(password).to_have_attribute("type", "password")
    expect(page.locator("#clone")).to_contain_text("the password of student in your clones")
    shot("template-clone-password")
