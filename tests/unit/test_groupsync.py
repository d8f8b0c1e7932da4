"""Groups from a directory or an identity provider: the mapping an administrator writes, and what a sign-in sets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from webvirt.accounts import groupsync
from webvirt.accounts.models import AuditEntry
from webvirt.virt.errors import VirtError

pytestmark = pytest.mark.django_db

MAPPING = """
# outside => webvirt
Students-2026 => students
cn=teachers,ou=groups,dc=school => teachers
"""


def test_a_mapping_with_mistakes_names_every_bad_line():
    with pytest.raises(VirtError) as caught:
        groupsync.parse("a => b\nno arrow here\n => nothing\na => c\n")
    assert caught.value.kind == "invalid"
    message = caught.value.message
    assert "line 2" in message and "line 3" in message and "line 4: 'a' is mapped twice" in message
    assert "line 1" not in message


def test_a_sign_in_sets_only_the_mapped_groups_and_leaves_local_ones(django_user_model):
    user = django_user_model.objects.create_user("student1")  # no local password: made by the sign-in
    local = Group.objects.create(name="chess club")
    teachers = Group.objects.create(name="teachers")
    user.groups.add(local, teachers)
    mapping = groupsync.parse(MAPPING, admin_groups="staff-admins")
    assert groupsync.apply(user, ["STUDENTS-2026", "unmapped"], mapping, "ldap") == ["students"]
    assert sorted(user.groups.values_list("name", flat=True)) == ["chess club", "students"]
    assert not user.is_superuser
    entry = AuditEntry.objects.get(action="user.groups_synced")
    assert entry.via == "ldap" and "added to students; removed from teachers" in entry.detail
    # The next sign-in reports an administrator group: the user becomes one; then not any more.
    groupsync.apply(user, ["Staff-Admins"], mapping, "oidc")
    user.refresh_from_db()
    assert user.is_staff and user.is_superuser and list(user.groups.values_list("name", flat=True)) == ["chess club"]
    groupsync.apply(user, [], mapping, "oidc")
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser


def test_a_local_administrator_is_never_demoted_by_a_sign_in_elsewhere(django_user_model):
    admin = django_user_model.objects.create_superuser("root-local", "", "a-local-password-1")
    groupsync.apply(admin, ["students-2026"], groupsync.parse(MAPPING, "staff-admins"), "ldap")
    admin.refresh_from_db()
    assert admin.is_superuser and list(admin.groups.values_list("name", flat=True)) == ["students"]
