"""Importing a class from CSV: good, bad and mixed files, a re-import that updates, administrators never
touched, all lines or none, every bad line with its number, and an audit trail without passwords."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group

from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.people import csvimport
from webvirt.people.csvimport import ImportRefused
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

pytestmark = pytest.mark.django_db

CLASS = """username,name,email,groups
ada,Ada King Lovelace,ada@example.org,students;maths
alan,Alan Turing,alan@example.org,students
grace,Grace,,students;navy
"""


def usernames() -> list[str]:
    return sorted(get_user_model().objects.values_list("username", flat=True))


def test_a_good_file_creates_the_class_its_groups_and_a_password_for_each_shown_once(admin):
    preview = csvimport.plan(CLASS)
    assert preview.ok and preview.counts == {"create": 3, "update": 0, "unchanged": 0, "error": 0}
    assert preview.new_groups == ["students", "maths", "navy"]
    assert "new group students" in preview.lines[0].what and preview.lines[0].number == 2
    assert usernames() == ["alice"]  # a preview writes nothing

    result = csvimport.apply(Actor(user=admin), CLASS)

    assert result.created == ["ada", "alan", "grace"] and result.new_groups == ["students", "maths", "navy"]
    ada = get_user_model().objects.get(username="ada")
    assert (ada.first_name, ada.last_name, ada.email) == ("Ada King", "Lovelace", "ada@example.org")
    assert sorted(g.name for g in ada.groups.all()) == ["maths", "students"]
    grace = get_user_model().objects.get(username="grace")
    assert (grace.first_name, grace.last_name, grace.email) == ("Grace", "", "")
    passwords = dict(result.passwords)
    assert sorted(passwords) == ["ada", "alan", "grace"] and len(set(passwords.values())) == 3
    assert authenticate(username="alan", password=passwords["alan"]) is not None
    assert result.passwords_csv().splitlines()[0] == "username,password"
    assert f"ada,{passwords['ada']}" in result.passwords_csv().splitlines()
    assert Group.objects.get(name="students").user_set.count() == 3


def test_the_import_is_audited_once_with_counts_and_per_user_and_never_with_a_password(admin):
    with_password = ("username,name,email,groups,password\n" + "".join(CLASS.splitlines(keepends=True)[1:])
                     + "linus,Linus T,,students,Penguin-Power-9\n")  # the others have no password cell
    result = csvimport.apply(Actor(user=admin), with_password)

    entry = AuditEntry.objects.get(action="people.import")
    assert entry.outcome == "ok" and entry.detail.startswith("4 created, 0 updated, 0 unchanged")
    assert "3 password(s) generated" in entry.detail
    assert AuditEntry.objects.filter(action="user.create").count() == 4
    assert AuditEntry.objects.filter(action="group.create").count() == 3
    trail = " ".join(AuditEntry.objects.values_list("detail", flat=True))
    assert "Penguin-Power-9" not in trail and "password from the file" in trail
    assert not any(password in trail for _, password in result.passwords)
    assert authenticate(username="linus", password="Penguin-Power-9") is not None


BAD = """username,name,email,groups
ada,Ada Lovelace,ada@example.org,students
bad name,Someone,,students
ADA,Ada Again,,students
carol,Carol,not-an-address,students
alice,Alice,,students
dan,Dan,,students,extra
"""


def test_a_bad_file_reports_every_bad_line_with_its_number_and_writes_nothing(admin):
    with pytest.raises(ImportRefused) as refused:
        csvimport.apply(Actor(user=admin), BAD)

    assert refused.value.kind == errors.INVALID
    bad = refused.value.plan.errors
    assert bad == [
        "line 3 (bad name): a user name has only letters, digits and @ . + - _ (no spaces)",
        "line 4 (ADA): ADA is already on line 2",
        "line 5 (carol): 'not-an-address' is not an e-mail address",
        "line 6 (alice): alice is an administrator: an import never changes administrators",
        "line 7 (dan): 5 values, but the header names 4 columns",
    ]
    assert refused.value.plan.lines[0].action == "create"  # the good line was fine, and is not imported either
    assert usernames() == ["alice"] and not Group.objects.exists()
    assert AuditEntry.objects.get(action="people.import").outcome == "failed"
    assert "line 3" in AuditEntry.objects.get(action="people.import").detail


@pytest.mark.parametrize(("text", "problem"), [
    ("", "the file is empty: its first line must be the header username,name,email,groups"),
    ("  \n\n", "the file is empty: its first line must be the header username,name,email,groups"),
    ("ada,Ada Lovelace,ada@example.org,students\n", "line 1: the first line must be the header "
                                                    "username,name,email,groups"),
    ("name,email\nAda,ada@example.org\n", "line 1: the first line must be the header username,name,email,groups "
                                          "(it has no 'username' column)"),
    ("username,name,phone\nada,Ada,123\n", "line 1: unknown column 'phone' (the columns are username, name, email, "
                                           "groups, password)"),
    ("username,name,Name\nada,Ada,Ada\n", "line 1: the column name is named twice"),
    ("username;name;email;groups\nada;Ada;;\n", "line 1: the columns are separated by ';'; separate them with "
                                                "commas (and groups with ';')"),
    ("username,name\n", "the file has a header but nobody under it"),
    ('username,name\nada,"Ada\n', "line 2: this is not valid CSV (unexpected end of data); nothing after it was "
                                  "read"),
    ("username,name\nada,Ada\nalan,Al\x00an\n", "line 3: a NUL character: this is not a text file"),
])
def test_whole_file_problems_are_named_with_their_line(admin, text, problem):
    plan = csvimport.plan(text)
    assert plan.errors == [problem]
    with pytest.raises(ImportRefused):
        csvimport.apply(Actor(user=admin), text)
    assert usernames() == ["alice"]


def test_a_file_over_two_mib_or_five_thousand_people_is_refused_whole(admin):
    with pytest.raises(VirtError, match="larger than 2 MiB"):
        csvimport.read(b"username\n" + b"a" * (2 * 1024**2))
    assert csvimport.plan("username\n" + "a" * (2 * 1024**2)).errors == [
        "the file is larger than 2 MiB: import the class in parts"]
    many = "username\n" + "".join(f"s{n}\n" for n in range(5001))
    errors_found = csvimport.plan(many).errors
    assert errors_found == ["line 5002: the file has more than 5,000 people: import the class in parts"]
    assert csvimport.plan("username\n" + "".join(f"s{n}\n" for n in range(5000))).ok


def test_a_file_that_is_not_utf8_is_refused_with_the_line_and_a_byte_order_mark_is_fine():
    with pytest.raises(VirtError, match="Line 2 is not UTF-8"):
        csvimport.read("username,name\nzoë,Zoë\n".encode("latin-1"))
    assert csvimport.read("\ufeffusername\nzoë\n".encode()) == "username\nzoë\n"


def test_a_mixed_file_imports_nothing_until_fixed_and_then_everything(admin):
    mixed = CLASS + "bad name,x,,\n"
    with pytest.raises(ImportRefused) as refused:
        csvimport.apply(Actor(user=admin), mixed)
    assert refused.value.plan.counts == {"create": 3, "update": 0, "unchanged": 0, "error": 1}
    assert "1 problem in the file: line 5 (bad name)" in refused.value.message
    assert usernames() == ["alice"]

    fixed = CLASS + "bad_name,x,,\n"
    assert csvimport.apply(Actor(user=admin), fixed).created == ["ada", "alan", "grace", "bad_name"]


def test_a_reimport_updates_the_people_already_there_instead_of_making_them_again(admin):
    first = csvimport.apply(Actor(user=admin), CLASS)
    ada = get_user_model().objects.get(username="ada")
    password_hash = ada.password

    again = csvimport.plan(CLASS)
    assert again.counts == {"create": 0, "update": 0, "unchanged": 3, "error": 0} and again.new_groups == []

    changed = CLASS.replace("ada@example.org,students;maths", "ada@school.org,students;chess").replace(
        "grace,Grace,,", "grace,Grace Hopper,,") + "linus,Linus,,students\n"
    plan = csvimport.plan(changed)
    assert [(line.username, line.action) for line in plan.lines] == [
        ("ada", "update"), ("alan", "unchanged"), ("grace", "update"), ("linus", "create")]
    assert plan.lines[0].changes == ["e-mail: ada@example.org → ada@school.org", "added to chess"]
    assert plan.lines[2].changes == ["last name: (empty) → Hopper"]

    result = csvimport.apply(Actor(user=admin), changed)
    assert (result.created, result.updated, result.unchanged) == (["linus"], ["ada", "grace"], ["alan"])
    assert [u for u, _ in result.passwords] == ["linus"]  # nobody already there gets a new password
    assert get_user_model().objects.filter(username__iexact="ada").count() == 1
    ada.refresh_from_db()
    assert ada.email == "ada@school.org" and ada.password == password_hash
    # Groups are added, never taken away: ada is still in maths.
    assert sorted(g.name for g in ada.groups.all()) == ["chess", "maths", "students"]
    assert first.created == ["ada", "alan", "grace"]
    update = AuditEntry.objects.filter(action="user.update", object_repr="ada").get()
    assert update.detail == "CSV import line 2: e-mail: ada@example.org → ada@school.org; added to chess"


def test_an_empty_cell_changes_nothing_and_a_password_for_someone_already_there_is_left_alone(admin, bob):
    get_user_model().objects.filter(pk=bob.pk).update(first_name="Bob", last_name="Smith", email="bob@example.org")
    text = "username,name,email,groups,password\nbob,,,,New-Password-123\n"
    plan = csvimport.plan(text)
    assert plan.lines[0].action == "unchanged"
    assert plan.lines[0].notes == ["password left as it is (reset it on their page)"]
    csvimport.apply(Actor(user=admin), text)
    bob.refresh_from_db()
    assert (bob.get_full_name(), bob.email) == ("Bob Smith", "bob@example.org")
    assert bob.check_password("bob-password-1")


def test_an_administrator_is_never_changed_by_an_import_even_in_a_file_that_is_otherwise_fine(admin):
    other_admin = get_user_model().objects.create_user("root2", "root2@example.org", "root2-password-1",
                                                       is_staff=True)
    text = "username,name,email,groups\nroot2,Mallory,evil@example.org,students\n"
    with pytest.raises(ImportRefused, match="root2 is an administrator"):
        csvimport.apply(Actor(user=admin), text)
    other_admin.refresh_from_db()
    assert (other_admin.first_name, other_admin.email) == ("", "root2@example.org")
    assert not other_admin.groups.exists() and not Group.objects.filter(name="students").exists()


def test_a_name_that_exists_in_another_case_must_be_written_as_it_is_and_groups_match_any_case(admin, dave):
    plan = csvimport.plan("username,groups\nDave,Teachers;Chess\n")
    assert plan.errors == ["line 2 (Dave): there is a user dave (the same name in another case): write it that way"]
    plan = csvimport.plan("username,groups\ndave,Teachers;Chess\n")
    assert plan.lines[0].changes == ["added to Chess"] and plan.new_groups == ["Chess"]


def test_a_password_in_the_file_is_checked_by_the_sites_rules():
    plan = csvimport.plan("username,password\nada,short\nalan,\n")
    assert plan.errors == ["line 2 (ada): the password: This password is too short. It must contain at least 8 "
                           "characters."]
    assert plan.lines[1].changes[-1] == "password generated"


def test_only_an_administrator_may_import(bob):
    with pytest.raises(Denied):
        csvimport.apply(Actor(user=bob), CLASS)
    assert usernames() == ["bob"]


def test_an_import_whose_outcome_changed_since_the_preview_is_refused(admin, bob):
    text = "username,name\nbob,Bob Builder\n"
    fingerprint = csvimport.plan(text).fingerprint()
    get_user_model().objects.filter(pk=bob.pk).update(first_name="Bob", last_name="Builder")
    with pytest.raises(VirtError, match="changed since the preview") as refused:
        csvimport.apply(Actor(user=admin), text, fingerprint)
    assert refused.value.kind == errors.CONFLICT
    assert csvimport.apply(Actor(user=admin), text, csvimport.plan(text).fingerprint()).unchanged == ["bob"]


def test_the_previews_token_carries_the_file_and_refuses_an_altered_one():
    plan = csvimport.plan(CLASS)
    token = csvimport.sign(CLASS, plan)
    assert csvimport.unsign(token) == (CLASS, plan.fingerprint())
    with pytest.raises(VirtError, match="more than an hour old or was altered"):
        csvimport.unsign(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_generated_passwords_get_a_light_hash_that_the_first_sign_in_makes_full(admin, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    result = csvimport.apply(Actor(user=admin), "username\nada\n")
    ada = get_user_model().objects.get(username="ada")
    assert ada.password.startswith(f"pbkdf2_sha256${csvimport.GENERATED_ITERATIONS}$")

    assert authenticate(username="ada", password=result.passwords[0][1]) == ada
    ada.refresh_from_db()
    iterations = int(ada.password.split("$")[1])
    assert iterations > csvimport.GENERATED_ITERATIONS and iterations >= 1_000_000


def test_names_are_split_at_the_last_space():
    assert csvimport.split_name("Ada King  Lovelace") == ("Ada King", "Lovelace")
    assert csvimport.split_name(" Plato ") == ("Plato", "")
    assert csvimport.split_name("") == ("", "")
