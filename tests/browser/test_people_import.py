"""A class in a real browser: an administrator imports three students from CSV, grants a template to their
group, and one student signs in with the password the import generated and clones the template.

The whole stack runs for real: uvicorn (pages and the event socket), the event watcher and a Celery worker
that runs the clone job, on the test database, against libvirt's test driver through the daemon.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.browser.conftest import ADMIN_PASSWORD
from tests.browser.test_self_service import exam_template, shot  # noqa: F401  (exam_template: a fixture)

pytestmark = pytest.mark.browser
CLASS = """username,name,email,groups
stu1,Ada Lovelace,ada@example.org,class-2026
stu2,Alan Turing,alan@example.org,class-2026
stu3,Grace Hopper,,class-2026
"""


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))


def test_an_administrator_imports_a_class_grants_it_a_template_and_a_student_clones_it(
        stack_page, admin, exam_template):  # type: ignore[no-untyped-def]  # noqa: F811
    page = stack_page
    log_in(page, admin.username, ADMIN_PASSWORD)

    # The People page, then the import: paste, preview, import.
    page.goto("/people/")
    expect(page.locator("h1")).to_have_text("People")
    page.get_by_role("link", name="Import from CSV").click()
    page.get_by_label("…or paste it here").fill(CLASS)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-counts]")).to_contain_text("3 to create, 0 to update, 0 unchanged; new group: "
                                                          "class-2026")
    expect(page.locator("#preview-lines tbody tr[data-action=create]")).to_have_count(3)
    expect(page.locator("tr[data-line='2']")).to_contain_text("name: Ada Lovelace; e-mail: ada@example.org")
    assert get_user_model().objects.filter(username__startswith="stu").count() == 0  # a preview writes nothing
    shot(page, "people-import-preview")
    page.get_by_role("button", name="Import").click()

    expect(page.locator("h1")).to_have_text("Imported")
    expect(page.locator("[data-counts]")).to_contain_text("3 created, 0 updated, 0 unchanged")
    passwords = {name: page.locator(f"tr[data-password-for='{name}'] code").inner_text()
                 for name in ("stu1", "stu2", "stu3")}
    assert len(set(passwords.values())) == 3
    download = page.get_by_role("link", name="Download as CSV (username,password)").get_attribute("href") or ""
    assert unquote(download.split(",", 1)[1]).splitlines()[1] == f"stu1,{passwords['stu1']}"
    shot(page, "people-imported")

    # The group on the People page, then granted the template on the template's edit page.
    page.goto("/people/")
    expect(page.locator("tr[data-group='class-2026']")).to_contain_text("3")
    shot(page, "people-list")
    page.goto(f"/templates/{exam_template.pk}/edit/")
    page.get_by_label("class-2026").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".msg.success")).to_contain_text(f"Template {exam_template.name} is saved.")
    assert [g.name for g in exam_template.groups.all()] == ["class-2026"]
    page.get_by_role("button", name="Log out").click()

    # A student signs in with the generated password and clones the template.
    log_in(page, "stu1", passwords["stu1"])
    page.get_by_role("link", name="Templates").click()
    expect(page.locator("#templates tbody tr")).to_have_count(1)
    page.get_by_role("link", name=exam_template.name).click()
    page.get_by_label("How many").fill("1")
    page.get_by_role("button", name="Clone").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-state]")).to_have_text(re.compile("succeeded"), timeout=60_000)
    expect(page.locator("#job-detail")).to_contain_text("1 of 1 clone(s) made")
    shot(page, "people-student-clone-done")

    page.get_by_role("link", name="Domains", exact=True).click()
    expect(page.locator("tbody tr[data-domain]")).to_have_count(1)
    from webvirt.domains.models import Domain

    clone = Domain.objects.get(template=exam_template)
    assert clone.owner is not None and clone.owner.get_username() == "stu1"
