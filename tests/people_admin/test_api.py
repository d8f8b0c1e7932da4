"""The people API: /api/v1/users/, /api/v1/groups/ and /api/v1/users/import/, for administrators only
(anyone else hears 404, anonymous 401), through the same services as the pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from tests.people import api_for
from webvirt.accounts.models import AuditEntry

pytestmark = pytest.mark.django_db

CLASS = "username,name,email,groups\nada,Ada Lovelace,ada@example.org,students\nalan,Alan Turing,,students\n"
ROUTES = [("get", "/api/v1/users/"), ("post", "/api/v1/users/"), ("get", "/api/v1/users/{user}/"),
          ("patch", "/api/v1/users/{user}/"), ("post", "/api/v1/users/import/"), ("get", "/api/v1/groups/"),
          ("post", "/api/v1/groups/"), ("get", "/api/v1/groups/{group}/"), ("patch", "/api/v1/groups/{group}/"),
          ("delete", "/api/v1/groups/{group}/")]


def test_every_route_is_for_administrators_anyone_else_hears_404_and_anonymous_401(admin, dave, stranger):
    bodies = {"post": {"username": "mallory", "name": "mallory", "csv": "username\nmallory\n"},
              "patch": {"is_admin": True, "name": "pwned", "members": ["charlie"]}}
    for method, pattern in ROUTES:
        path = pattern.format(user=stranger.pk, group=dave.groups.get().pk)
        body = bodies.get(method)
        assert getattr(api_for(stranger), method)(path, body, format="json").status_code == 404, (method, path)
        assert getattr(APIClient(), method)(path, body, format="json").status_code == 401, (method, path)
        assert getattr(api_for(admin), method)(path).status_code < 500, (method, path)
    stranger.refresh_from_db()
    assert not stranger.is_staff and not get_user_model().objects.filter(username="mallory").exists()
    assert not Group.objects.filter(name__in=["mallory", "pwned"]).exists()


def test_users_are_listed_searched_and_read_with_their_groups_and_machines(admin, dave, machine):
    machine(dave)
    api = api_for(admin)
    listing = api.get("/api/v1/users/").json()
    assert listing["count"] == 2
    dave_row = next(u for u in listing["results"] if u["username"] == "dave")
    assert dave_row == {"id": dave.pk, "username": "dave", "first_name": "", "last_name": "", "email": "",
                        "is_active": True, "is_admin": False, "groups": ["teachers"],
                        "date_joined": dave_row["date_joined"], "last_login": None, "machines": 1}
    assert "password" not in dave_row
    assert [u["username"] for u in api.get("/api/v1/users/?search=DAV").json()["results"]] == ["dave"]
    assert api.get("/api/v1/users/?search=da%00ve").json()["count"] == 1  # the NUL dropped: PostgreSQL refuses it
    assert api.get(f"/api/v1/users/{admin.pk}/").json()["is_admin"] is True
    assert api.get("/api/v1/users/999999/").status_code == 404


def test_creating_a_user_answers_a_generated_password_once_or_takes_a_given_one(admin, dave):
    api = api_for(admin)
    made = api.post("/api/v1/users/", {"username": "ada", "first_name": "Ada", "groups": ["teachers"]},
                    format="json")
    assert made.status_code == 201 and made["Cache-Control"] == "no-store"
    body = made.json()
    assert body["groups"] == ["teachers"] and body["is_admin"] is False and body["machines"] == 0
    assert authenticate(username="ada", password=body["generated_password"]) is not None
    assert "generated_password" not in api.get(f"/api/v1/users/{body['id']}/").json()

    given = api.post("/api/v1/users/", {"username": "alan", "password": "Enigma-Machine-1939", "is_admin": True},
                     format="json")
    assert given.status_code == 201 and "generated_password" not in given.json() and given.json()["is_admin"]
    assert authenticate(username="alan", password="Enigma-Machine-1939") is not None

    weak = api.post("/api/v1/users/", {"username": "grace", "password": "12345678"}, format="json")
    assert weak.status_code == 400 and "too common" in weak.json()["error"]
    taken = api.post("/api/v1/users/", {"username": "DAVE"}, format="json")
    assert taken.status_code == 409 and taken.json() == {"error": "There is already a user DAVE.", "code": "conflict"}
    unknown = api.post("/api/v1/users/", {"username": "grace", "groups": ["nobody"]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"].startswith("groups:")
    assert api.post("/api/v1/users/", {}, format="json").status_code == 400


def test_patching_a_user_changes_what_is_given_and_never_the_user_name(admin, dave):
    api = api_for(admin)
    Group.objects.create(name="students")
    changed = api.patch(f"/api/v1/users/{dave.pk}/", {"last_name": "Jones", "groups": ["students"],
                                                      "is_admin": True}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["last_name"], changed.json()["groups"], changed.json()["is_admin"]) == (
        "Jones", ["students"], True)
    dave.refresh_from_db()
    assert dave.is_staff and dave.is_superuser

    assert api.patch(f"/api/v1/users/{dave.pk}/", {"password": "Dave-New-Password-7"},
                     format="json").status_code == 200
    assert authenticate(username="dave", password="Dave-New-Password-7") == dave
    assert api.patch(f"/api/v1/users/{dave.pk}/", {"password": "short"}, format="json").status_code == 400
    renamed = api.patch(f"/api/v1/users/{dave.pk}/", {"username": "david"}, format="json")
    assert renamed.status_code == 400 and "cannot be changed" in renamed.json()["error"]
    deactivated = api.patch(f"/api/v1/users/{dave.pk}/", {"is_active": False}, format="json")
    assert deactivated.json()["is_active"] is False
    assert AuditEntry.objects.filter(action="user.update", via="api").count() == 2


def test_an_administrator_cannot_demote_or_deactivate_themselves_through_the_api(admin):
    api = api_for(admin)
    for body in ({"is_admin": False}, {"is_active": False}):
        refused = api.patch(f"/api/v1/users/{admin.pk}/", body, format="json")
        assert refused.status_code == 409 and "ask another administrator" in refused.json()["error"]
    admin.refresh_from_db()
    assert admin.is_active and admin.is_superuser


def test_groups_are_listed_made_renamed_given_members_and_deleted(admin, bob, dave):
    api = api_for(admin)
    assert api.get("/api/v1/groups/").json()["results"] == [
        {"id": dave.groups.get().pk, "name": "teachers", "members": ["dave"]}]
    made = api.post("/api/v1/groups/", {"name": "maths", "members": ["bob"]}, format="json")
    assert made.status_code == 201 and made.json()["members"] == ["bob"]
    pk = made.json()["id"]
    assert api.post("/api/v1/groups/", {"name": "MATHS"}, format="json").status_code == 409
    changed = api.patch(f"/api/v1/groups/{pk}/", {"name": "maths-2026", "members": ["dave"]}, format="json")
    assert changed.json() == {"id": pk, "name": "maths-2026", "members": ["dave"]}
    assert api.patch(f"/api/v1/groups/{pk}/", {"members": ["nobody"]}, format="json").status_code == 400
    assert api.get(f"/api/v1/groups/{pk}/").json()["members"] == ["dave"]
    assert api.delete(f"/api/v1/groups/{pk}/").status_code == 204
    assert not Group.objects.filter(pk=pk).exists() and get_user_model().objects.filter(username="dave").exists()
    assert api.post("/api/v1/groups/", {}, format="json").status_code == 400


def test_the_import_takes_csv_or_json_previews_with_dry_run_and_applies_all_at_once(admin):
    api = api_for(admin)
    dry = api.post("/api/v1/users/import/?dry_run=true", CLASS, content_type="text/csv")
    assert dry.status_code == 200
    assert dry.json()["counts"] == {"create": 2, "update": 0, "unchanged": 0, "error": 0}
    assert dry.json()["lines"][0] == {"line": 2, "username": "ada", "action": "create", "changes": [
        "name: Ada Lovelace", "e-mail: ada@example.org", "groups: students", "password generated"],
        "notes": ["new group students"], "errors": []}
    assert get_user_model().objects.count() == 1

    done = api.post("/api/v1/users/import/", CLASS, content_type="text/csv")
    assert done.status_code == 201 and done["Cache-Control"] == "no-store"
    body = done.json()
    assert (body["created"], body["updated"], body["unchanged"], body["new_groups"]) == (2, 0, 0, ["students"])
    assert [p["username"] for p in body["passwords"]] == ["ada", "alan"]
    assert authenticate(username="ada", password=body["passwords"][0]["password"]) is not None

    again = api.post("/api/v1/users/import/", {"csv": CLASS.replace(",,students", ",alan@example.org,students")},
                     format="json")
    assert again.status_code == 201
    assert (again.json()["created"], again.json()["updated"], again.json()["unchanged"]) == (0, 1, 1)
    assert again.json()["passwords"] == []
    assert get_user_model().objects.count() == 3
    assert AuditEntry.objects.filter(action="people.import", via="api").count() == 2


def test_a_bad_file_answers_400_with_every_bad_line_dry_run_or_not(admin):
    api = api_for(admin)
    bad = CLASS + "alice,,,\nada,,,\nx y,,,\n"
    for path in ("/api/v1/users/import/?dry_run=true", "/api/v1/users/import/"):
        answer = api.post(path, bad, content_type="text/plain")
        assert answer.status_code == 400
        body = answer.json()
        assert body["code"] == "invalid" and body["error"].startswith("Nothing was imported: 3 problems")
        assert body["errors"] == [
            "line 4 (alice): alice is an administrator: an import never changes administrators",
            "line 5 (ada): ada is already on line 2",
            "line 6 (x y): a user name has only letters, digits and @ . + - _ (no spaces)"]
        assert [line["action"] for line in body["lines"]] == ["create", "create", "error", "error", "error"]
    assert get_user_model().objects.count() == 1
    assert api.post("/api/v1/users/import/", {}, format="json").status_code == 400
    empty = api.post("/api/v1/users/import/", "", content_type="text/csv")
    assert empty.status_code == 400 and "the file is empty" in empty.json()["error"]
    latin = api.post("/api/v1/users/import/", "username\nzoë\n".encode("latin-1"), content_type="text/csv")
    assert latin.status_code == 400 and "not UTF-8" in latin.json()["error"]
