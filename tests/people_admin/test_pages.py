"""The People pages, posted to the way a browser does (CSRF enforced): the lists, a user's page, creating,
editing, deactivating, passwords shown once, API tokens, groups and the CSV import with its preview."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import NoReverseMatch, reverse

from tests.people import client_for, make_user
from webvirt.accounts.models import ApiToken, AuditEntry
from webvirt.accounts.tokens import create_token
from webvirt.catalog.models import Quota
from webvirt.people import views

pytestmark = pytest.mark.django_db

PAGES = ["/people/", "/people/new/", "/people/import/", "/people/{user}/", "/people/{user}/edit/",
         "/people/{user}/password/", "/people/{user}/deactivate/", "/people/{user}/reactivate/",
         "/people/{user}/tokens/{token}/revoke/", "/people/groups/new/", "/people/groups/{group}/",
         "/people/groups/{group}/delete/"]


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_every_page_is_the_administrators_alone(admin, dave, stranger):
    token = create_token(dave)[0]
    paths = [p.format(user=dave.pk, token=token.pk, group=dave.groups.get().pk) for p in PAGES]
    for path in paths:
        assert client_for(admin).get(path).status_code == 200, path
        assert client_for(stranger).get(path).status_code == 404, path
        assert client_for(dave).post(path, {}).status_code == 404, path
        assert Client().get(path)["Location"].startswith("/accounts/login/"), path
    dave.refresh_from_db()
    assert dave.is_active and ApiToken.objects.filter(pk=token.pk).exists() and dave.groups.exists()


def test_the_people_page_lists_users_with_their_machines_and_groups_with_their_templates(admin, dave, machine,
                                                                                         template):
    machine(dave)
    template.groups.add(dave.groups.get())
    page = client_for(admin).get("/people/")
    text = text_of(page)
    assert re.search(r"dave — — teachers no yes 1 never", text), text
    assert re.search(rf"teachers 1 {template.name}", text)
    for name, label in views.SIGN_IN_PAGES:  # linked exactly when that app is installed
        try:
            link = f'href="{reverse(name)}">{label}</a>'.encode()
        except NoReverseMatch:
            assert label not in text
        else:
            assert link in page.content


def test_the_sign_in_pages_are_linked_once_their_routes_exist(admin, monkeypatch):
    monkeypatch.setattr(views, "SIGN_IN_PAGES", (("people:import", "LDAP sign-in"), ("nowhere:settings", "Other")))
    page = client_for(admin).get("/people/")
    assert b'<a class="button" href="/people/import/">LDAP sign-in</a>' in page.content
    assert b"Other" not in page.content


def test_users_are_searched_and_shown_a_page_at_a_time(admin):
    for n in range(60):
        make_user(f"student{n:02}")
    get_user_model().objects.filter(username="student07").update(email="seven@school.org")
    first = client_for(admin).get("/people/")
    assert first.context["page"].paginator.count == 61 and len(first.context["page"]) == 50
    assert b"Page 1 of 2" in first.content
    second = client_for(admin).get("/people/?page=2")
    assert [u.username for u in second.context["page"]] == [f"student{n:02}" for n in range(49, 60)]
    found = client_for(admin).get("/people/?q=school")
    assert [u.username for u in found.context["page"]] == ["student07"]
    assert client_for(admin).get("/people/?q=nobody-at-all").context["page"].paginator.count == 0


def test_a_new_user_with_a_generated_password_sees_it_once_on_an_uncached_page(admin, browser_like):
    Group.objects.create(name="students")
    client = browser_like(admin)
    answer = client.submit("/people/new/", {"username": "ada", "first_name": "Ada", "last_name": "Lovelace",
                                            "email": "ada@example.org",
                                            "groups": [Group.objects.get(name="students").pk]})
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    password = re.search(rb'data-password value="([^"]+)"', answer.content).group(1).decode()
    ada = get_user_model().objects.get(username="ada")
    assert authenticate(username="ada", password=password) == ada
    assert password.encode() not in client.get(f"/people/{ada.pk}/").content


def test_a_new_user_with_a_typed_password_goes_to_their_page_and_a_bad_one_is_said_on_the_form(admin, browser_like):
    client = browser_like(admin)
    refused = client.submit("/people/new/", {"username": "ada", "password": "short"})
    assert refused.status_code == 200 and b"too short" in refused.content
    assert not get_user_model().objects.filter(username="ada").exists()
    made = client.submit("/people/new/", {"username": "ada", "password": "Analytical-Engine-1843", "is_admin": "on"})
    ada = get_user_model().objects.get(username="ada")
    assert made["Location"] == f"/people/{ada.pk}/" and ada.is_superuser and ada.is_staff
    assert authenticate(username="ada", password="Analytical-Engine-1843") == ada


def test_a_post_without_the_csrf_token_is_refused(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post("/people/new/", {"username": "ada"}).status_code == 403
    assert not get_user_model().objects.filter(username="ada").exists()


def test_editing_a_user_and_the_administrator_who_cannot_demote_themselves(admin, dave, browser_like):
    client = browser_like(admin)
    teachers = Group.objects.get(name="teachers")
    saved = client.submit(f"/people/{dave.pk}/edit/", {"first_name": "Dave", "email": "dave@example.org",
                                                       "groups": [teachers.pk], "is_active": "on"})
    assert saved["Location"] == f"/people/{dave.pk}/"
    dave.refresh_from_db()
    assert (dave.first_name, dave.email, dave.is_active) == ("Dave", "dave@example.org", True)

    refused = client.submit(f"/people/{admin.pk}/edit/", {"is_active": "on"})  # administrator unticked
    assert refused.status_code == 200
    assert b"You cannot remove your own administrator status: ask another administrator." in refused.content
    admin.refresh_from_db()
    assert admin.is_superuser


def test_deactivating_asks_first_says_the_machines_stay_and_they_are_listed_with_a_warning(admin, bob, machine,
                                                                                          browser_like):
    owned = [machine(bob), machine(bob)]
    client = browser_like(admin)
    confirm = client.get(f"/people/{bob.pk}/deactivate/")
    assert "2 machines of theirs stay as they are" in text_of(confirm)
    bob.refresh_from_db()
    assert bob.is_active  # asking changed nothing

    done = client.submit(f"/people/{bob.pk}/deactivate/")
    assert done["Location"] == f"/people/{bob.pk}/"
    bob.refresh_from_db()
    assert not bob.is_active
    page = client.get(f"/people/{bob.pk}/")
    assert "bob is deactivated, but 2 machines still exist" in text_of(page)
    for m in owned:
        assert f'href="/domains/{m.pk}/"'.encode() in page.content
    listing = client.get("/people/")
    assert "deactivated 2 machines still exist" in text_of(listing)
    assert f'href="/people/{bob.pk}/#machines" data-warning'.encode() in listing.content

    client.submit(f"/people/{bob.pk}/reactivate/")
    bob.refresh_from_db()
    assert bob.is_active


def test_an_administrator_is_not_offered_to_deactivate_themselves_and_is_refused_if_they_try(admin, browser_like):
    client = browser_like(admin)
    assert b"/deactivate/" not in client.get(f"/people/{admin.pk}/").content
    assert b"You cannot deactivate your own account" in client.get(f"/people/{admin.pk}/deactivate/").content
    refused = client.submit(f"/people/{admin.pk}/deactivate/")
    assert refused.status_code == 200 and b"You cannot deactivate your own account" in refused.content
    admin.refresh_from_db()
    assert admin.is_active


def test_a_password_reset_shows_a_generated_password_once_or_takes_a_typed_one(admin, bob, browser_like):
    client = browser_like(admin)
    answer = client.submit(f"/people/{bob.pk}/password/", {"password": ""})
    assert answer["Cache-Control"] == "no-store"
    password = re.search(rb'data-password value="([^"]+)"', answer.content).group(1).decode()
    assert authenticate(username="bob", password=password) == bob

    refused = client.submit(f"/people/{bob.pk}/password/", {"password": "123"})
    assert b"This password is too short" in refused.content
    typed = client.submit(f"/people/{bob.pk}/password/", {"password": "Bob-the-Builder-99"})
    assert typed["Location"] == f"/people/{bob.pk}/"
    assert authenticate(username="bob", password="Bob-the-Builder-99") == bob


def test_an_administrator_who_resets_their_own_password_stays_signed_in(admin, browser_like):
    client = browser_like(admin)
    client.submit(f"/people/{admin.pk}/password/", {"password": "Another-Admin-Password"})
    assert client.get("/people/").status_code == 200


def test_the_user_page_shows_machines_quota_tokens_groups_and_keys(admin, dave, machine):
    m = machine(dave, start=True)
    Quota.objects.create(group=dave.groups.get(), instances=3, memory_mib=1024)
    Quota.objects.create(user=dave, instances=2)
    token = create_token(dave, name="grading script")[0]
    text = text_of(client_for(admin).get(f"/people/{dave.pk}/"))
    assert f"{m.name} running testhost" in text
    assert "teachers group 1 / 3 1 / ∞ 256 / 1024 0 / ∞ dave 1 / 2 1 / ∞ 256 / ∞ 0 / ∞" in text
    assert "What is left 1 ∞ 768 ∞" in text
    assert f"grading script {token.prefix}…" in text and "Revoke…" in text
    assert "Groups teachers SSH keys 0" in text


def test_revoking_a_users_token_asks_first_and_is_audited(admin, dave, browser_like):
    token = create_token(dave, name="grading script")[0]
    client = browser_like(admin)
    path = f"/people/{dave.pk}/tokens/{token.pk}/revoke/"
    assert b"Scripts that use it are refused" in client.get(path).content
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert client.submit(path)["Location"] == f"/people/{dave.pk}/#tokens"
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert AuditEntry.objects.get(action="token.revoke").detail == "of dave"
    other = create_token(admin)[0]
    assert client.get(f"/people/{dave.pk}/tokens/{other.pk}/revoke/").status_code == 404  # not dave's


def test_groups_are_made_renamed_filled_emptied_and_deleted_after_saying_what_uses_them(admin, bob, dave,
                                                                                         browser_like, template):
    client = browser_like(admin)
    made = client.submit("/people/groups/new/", {"name": "maths"})
    maths = Group.objects.get(name="maths")
    assert made["Location"] == f"/people/groups/{maths.pk}/"
    assert b"There is already a group Maths" in client.submit("/people/groups/new/", {"name": "Maths"}).content

    path = f"/people/groups/{maths.pk}/"
    client.submit(path, {"do": "add", "add-usernames": "bob, Dave"})
    assert sorted(u.username for u in maths.user_set.all()) == ["bob", "dave"]
    assert b"No user is called nobody" in client.submit(path, {"do": "add", "add-usernames": "nobody"}).content
    client.submit(path, {"do": "rename", "rename-name": "maths-2026"})
    maths.refresh_from_db()
    assert maths.name == "maths-2026"
    refused = client.submit(path, {"do": "rename", "rename-name": "teachers"})
    assert b"There is already a group teachers" in refused.content
    removed = client.submit(f"/people/groups/{maths.pk}/remove/", {"user": bob.pk})
    assert removed["Location"] == path and list(maths.user_set.all()) == [dave]

    template.groups.add(maths)
    confirm = text_of(client.get(f"/people/groups/{maths.pk}/delete/"))
    assert f"granted 1 template: {template.name}" in confirm and "Its 1 member stays" in confirm
    assert client.submit(f"/people/groups/{maths.pk}/delete/")["Location"] == "/people/#groups"
    assert not Group.objects.filter(pk=maths.pk).exists() and get_user_model().objects.filter(username="dave")


def test_removing_nobody_from_a_group_says_so_on_the_groups_page(admin, dave, browser_like):
    group = dave.groups.get()
    answer = browser_like(admin).submit(f"/people/groups/{group.pk}/remove/", {})
    assert answer["Location"] == f"/people/groups/{group.pk}/"
    assert client_for(admin).get(f"/people/groups/{group.pk}/remove/").status_code == 405


CLASS = "username,name,email,groups\nada,Ada Lovelace,ada@example.org,students\nalan,Alan Turing,,students\n"


def test_the_import_previews_then_imports_exactly_that_and_shows_the_passwords_once(admin, browser_like):
    client = browser_like(admin)
    preview = client.submit("/people/import/", {"text": CLASS})
    text = text_of(preview)
    assert "2 to create, 0 to update, 0 unchanged; new group: students" in text
    assert "2 ada create name: Ada Lovelace; e-mail: ada@example.org; groups: students; password generated; " \
           "new group students" in text
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]
    token = preview.context["token"]

    done = client.submit("/people/import/", {"token": token})
    assert done.status_code == 200 and done["Cache-Control"] == "no-store"
    assert "2 created, 0 updated, 0 unchanged; new group: students" in text_of(done)
    passwords = dict(re.findall(rb'data-password-for="([^"]+)"><td>[^<]+</td><td><code>([^<]+)</code>',
                                done.content))
    assert sorted(passwords) == [b"ada", b"alan"]
    assert authenticate(username="ada", password=passwords[b"ada"].decode()) is not None
    download = re.search(rb'href="data:text/csv;charset=utf-8,([^"]+)" download="passwords.csv"', done.content)
    assert unquote(download.group(1).decode()).splitlines() == [
        "username,password", f"ada,{passwords[b'ada'].decode()}", f"alan,{passwords[b'alan'].decode()}"]

    # The same token again: nothing to create now, so the import no longer does what was previewed.
    again = client.submit("/people/import/", {"token": token})
    assert "People or groups changed since the preview" in text_of(again)
    assert "0 to create, 0 to update, 2 unchanged" in text_of(again)
    assert get_user_model().objects.count() == 3


def test_an_uploaded_file_is_previewed_and_its_bad_lines_listed_with_their_numbers(admin, browser_like):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = CLASS + "alice,Alice,,students\nbad name,,,\n"
    client = browser_like(admin)
    preview = client.submit("/people/import/", {"file": SimpleUploadedFile("class.csv", bad.encode(), "text/csv")})
    text = text_of(preview)
    assert "Nothing can be imported: 2 problems in the file" in text
    assert "line 4 (alice): alice is an administrator: an import never changes administrators" in text
    assert "line 5 (bad name): a user name has only letters" in text
    assert preview.context["token"] == "" and b'name="token"' not in preview.content


def test_an_altered_preview_token_or_an_empty_form_is_refused_with_a_sentence(admin, browser_like):
    client = browser_like(admin)
    assert b"Choose a CSV file, or paste its lines." in client.submit("/people/import/", {}).content
    answer = client.submit("/people/import/", {"token": "abc:def"})
    assert b"more than an hour old or was altered" in answer.content
    assert get_user_model().objects.count() == 1


def test_a_large_groups_members_are_shown_a_hundred_at_a_time(admin):
    for n in range(120):
        make_user(f"stu{n:03}", group="big-class")
    group = Group.objects.get(name="big-class")
    first = client_for(admin).get(f"/people/groups/{group.pk}/")
    assert first.context["page"].paginator.count == 120 and len(first.context["page"]) == 100
    assert b"Members <span class=\"muted\">(120)</span>" in first.content and b"Page 1 of 2" in first.content
    second = client_for(admin).get(f"/people/groups/{group.pk}/?page=2")
    assert [u.username for u in second.context["page"]] == [f"stu{n}" for n in range(100, 120)]
