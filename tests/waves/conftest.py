"""Fixtures for clone waves on libvirt's test driver: the catalog's template, a group of students."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from tests import people
from tests.catalog.conftest import base_volume, cleanup_clones, template, template_source  # noqa: F401


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch):  # type: ignore[no-untyped-def]
    """The test driver's guests print nothing: a machine is booted once it stays running, here 0.2 s."""
    from webvirt.catalog import jobs

    monkeypatch.setattr(jobs, "SETTLE_SECONDS", 0.2)


@pytest.fixture
def students(db):  # type: ignore[no-untyped-def]
    """Three users in the group 'class-a'."""
    return [people.make_user(name, group="class-a") for name in ("stu1", "stu2", "stu3")]


@pytest.fixture
def group(students):  # type: ignore[no-untyped-def]
    return Group.objects.get(name="class-a")


def body(tpl: Any, **extra: Any) -> dict:
    """An API request body for a wave of the template `tpl` for class-a, starting in a minute, for an hour."""
    start = timezone.now() + timedelta(minutes=1)
    return {"template": tpl.pk, "group": "class-a", "start_at": start.isoformat(),
            "end_at": (start + timedelta(hours=1)).isoformat(), "name_pattern": f"{tpl.name}-w{{n:02}}",
            "mode": "linked", **extra}
