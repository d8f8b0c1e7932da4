"""The people services: users (create, edit, deactivate, passwords) and groups, each audited, for
administrators only; the machines of a deactivated user stay on the host."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from tests.people import api_for, make_user
from webvirt.accounts.models import AuditEntry
from webvirt.accounts.policy import Actor, Denied
from webvirt.accounts.tokens import create_token, token_for_key
from webvirt.catalog.models import Quota
from webvirt.people import services
from webvirt.people.services import UserData
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.waves.models import Wave

pytestmark = pytest.mark.django_db


def test_a_new_user_without_a_password_gets_a_generated_one_that_works_and_is_kept_only_as_a_hash(admin):
    students = Group.objects.create(name="students")
    user, password = services.create_user(Actor(user=admin), UserData(
        username="ada", first_name="Ada", last_name="Lovelace", email="ada@example.org", groups=[students]))

    assert len(password) == 19 and password.count("-") == 3
    assert password not in user.password and user.check_password(password)
    assert (user.get_full_name(), user.email, list(user.groups.all())) == ("Ada Lovelace", "ada@example.org",
                                                                           [students])
    assert user.is_active and not services.is_admin(user)
    entry = AuditEntry.objects.get(action="user.create")
    assert entry.object_repr == "ada" and "password generated" in entry.detail and password not in entry.detail


def test_a_typed_password_is_checked_by_the_sites_rules_and_nothing_is_made_when_it_fails(admin):
    with pytest.raises(VirtError) as refused:
        services.create_user(Actor(user=admin), UserData(username="ada"), "short")
    assert refused.value.kind == errors.INVALID and "too short" in refused.value.message
    with pytest.raises(VirtError, match="too common"):
        services.create_user(Actor(user=admin), UserData(username="ada"), "password123")
    assert not get_user_model().objects.filter(username="ada").exists()

    user, generated = services.create_user(Actor(user=admin), UserData(username="ada"), "a-long-Passphrase")
    assert generated == "" and user.check_password("a-long-Passphrase")


def test_a_user_name_that_is_taken_in_another_case_or_not_a_user_name_is_refused(admin, bob):
    with pytest.raises(VirtError, match="already a user Bob") as taken:
        services.create_user(Actor(user=admin), UserData(username="Bob"))
    assert taken.value.kind == errors.CONFLICT
    with pytest.raises(VirtError, match="no spaces"):
        services.create_user(Actor(user=admin), UserData(username="two words"))
    with pytest.raises(VirtError, match="is not an e-mail address"):
        services.create_user(Actor(user=admin), UserData(username="carol", email="carol at home"))


def test_editing_a_user_sets_names_groups_and_administrator_status_and_the_trail_says_what_changed(admin, dave):
    students = Group.objects.create(name="students")
    data = services.data_of(dave)
    data.first_name, data.email, data.groups, data.is_admin = "Dave", "dave@example.org", [students], True
    services.update_user(Actor(user=admin), dave, data)

    dave.refresh_from_db()
    assert dave.first_name == "Dave" and dave.is_staff and dave.is_superuser
    assert [g.name for g in dave.groups.all()] == ["students"]
    detail = AuditEntry.objects.get(action="user.update").detail
    assert "administrator: yes" in detail and "added to students" in detail and "removed from teachers" in detail


def test_an_administrator_cannot_deactivate_themselves_or_take_away_their_own_administrator_status(admin):
    other = get_user_model().objects.create_superuser("root2", "", "root2-password-1")
    data = services.data_of(admin)
    data.is_admin = False
    with pytest.raises(VirtError, match="your own administrator status") as refused:
        services.update_user(Actor(user=admin), admin, data)
    assert refused.value.kind == errors.CONFLICT
    with pytest.raises(VirtError, match="deactivate your own account"):
        services.set_active(Actor(user=admin), admin, False)
    admin.refresh_from_db()
    assert admin.is_active and admin.is_superuser

    # Another administrator may do both.
    services.update_user(Actor(user=other), admin, data)
    services.set_active(Actor(user=other), admin, False)
    admin.refresh_from_db()
    assert not admin.is_active and not services.is_admin(admin)


def test_deactivating_a_user_keeps_their_machines_but_stops_their_sign_in_and_api_tokens(admin, bob, machine,
                                                                                          test_conn):
    owned = [machine(bob, start=True), machine(bob)]
    _, key = create_token(bob, name="script")
    assert token_for_key(key) is not None
    session = Client()
    session.force_login(bob)

    services.set_active(Actor(user=admin), bob, False)

    assert {m.pk for m in services.machines_of(bob)} == {m.pk for m in owned}
    assert test_conn.lookupByName(owned[0].name).isActive()  # still running on the host
    assert token_for_key(key) is None
    assert api_for(bob).get("/api/v1/domains/").status_code == 401
    assert authenticate(username="bob", password="bob-password-1") is None
    assert session.get("/domains/").status_code == 302  # the open session is signed out
    assert AuditEntry.objects.get(action="user.deactivate").detail == "2 machine(s) stay"

    services.set_active(Actor(user=admin), bob, True)
    assert authenticate(username="bob", password="bob-password-1") == bob


def test_a_password_reset_is_generated_or_typed_checked_and_ends_the_users_other_sessions(admin, bob):
    session = Client()
    session.force_login(bob)
    generated = services.reset_password(Actor(user=admin), bob)
    assert authenticate(username="bob", password=generated) == bob
    assert session.get("/domains/").status_code == 302  # signed out: the password changed

    with pytest.raises(VirtError, match="too short"):
        services.reset_password(Actor(user=admin), bob, "abc")
    assert services.reset_password(Actor(user=admin), bob, "Correct-horse-battery") == ""
    assert authenticate(username="bob", password="Correct-horse-battery") == bob
    details = list(AuditEntry.objects.filter(action="user.password_reset", outcome="ok").values_list("detail",
                                                                                                    flat=True))
    assert sorted(details) == ["generated", "typed by the administrator"]
    assert not AuditEntry.objects.filter(detail__contains="Correct-horse").exists()
    assert not AuditEntry.objects.filter(detail__contains=generated).exists()


def test_only_administrators_may_change_people(bob, stranger):
    with pytest.raises(Denied):
        services.create_user(Actor(user=bob), UserData(username="mallory"))
    with pytest.raises(Denied):
        services.reset_password(Actor(user=bob), stranger, "a-long-Passphrase")
    data = services.data_of(bob)
    data.is_admin = True
    with pytest.raises(Denied):
        services.update_user(Actor(user=bob), bob, data)
    bob.refresh_from_db()
    assert not services.is_admin(bob)
    assert AuditEntry.objects.filter(outcome="refused").count() == 3


def test_groups_are_created_renamed_given_members_and_refused_a_name_taken_in_another_case(admin, bob, dave):
    actor = Actor(user=admin)
    group = services.create_group(actor, " maths ", [bob])
    assert group.name == "maths" and list(group.user_set.all()) == [bob]
    with pytest.raises(VirtError, match="already a group Teachers") as taken:
        services.create_group(actor, "Teachers")
    assert taken.value.kind == errors.CONFLICT

    assert services.add_members(actor, group, [bob, dave]) == [dave]
    services.rename_group(actor, group, "maths-2026")
    assert services.remove_members(actor, group, [bob]) == [bob]
    group.refresh_from_db()
    assert group.name == "maths-2026" and list(group.user_set.all()) == [dave]
    services.set_members(actor, group, [bob])
    assert list(group.user_set.all()) == [bob]
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "detail"))
    assert ("group.rename", "from maths to maths-2026") in actions
    assert ("group.members", "added dave") in actions and ("group.members", "removed bob") in actions


def test_deleting_a_group_says_what_used_it_and_keeps_its_members(admin, dave, template):
    teachers = Group.objects.get(name="teachers")
    template.groups.add(teachers)
    start = timezone.now() + timedelta(days=1)
    wave = Wave.objects.create(name="exam", template=template, group=teachers, start_at=start,
                               end_at=start + timedelta(hours=2), name_pattern="exam-{n}")
    Quota.objects.create(group=teachers, instances=3)

    usage = services.usage_of(teachers)
    assert usage.templates == [template] and usage.waves == [wave] and usage.quota is not None
    assert usage.members == 1 and usage.anything

    services.delete_group(Actor(user=admin), teachers)
    assert not Group.objects.filter(name="teachers").exists()
    assert get_user_model().objects.filter(username="dave").exists()
    assert not template.groups.exists() and not Quota.objects.exists()
    wave.refresh_from_db()
    assert wave.group is None
    detail = AuditEntry.objects.get(action="group.delete").detail
    assert f"templates: {template.name}" in detail and "open waves: exam" in detail and "quota removed" in detail


def test_users_are_found_by_user_name_name_or_email_and_counted_with_their_machines(admin, bob, machine):
    get_user_model().objects.filter(pk=make_user("carol").pk).update(first_name="Carol", email="c@school.org")
    machine(bob)
    assert [u.username for u in services.search("school")] == ["carol"]
    assert [u.username for u in services.search("CAR")] == ["carol"]
    counts = {u.username: u.machines for u in services.users()}
    assert counts == {"alice": 0, "bob": 1, "carol": 0}
    with pytest.raises(VirtError, match="No user is called nobody"):
        services.users_named(["bob", "nobody"])
    assert services.users_named(["BOB", "bob"]) == [bob]
