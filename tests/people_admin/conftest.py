"""Fixtures for the People pages, API and CSV import: the suite's people (tests/people.py, tests/conftest.py),
machines they own on libvirt's test driver, and clients that post forms the way a browser does (with
the CSRF token the page gave them).

Named people_admin, not people: tests/people.py is the suite's module of users and clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.catalog.conftest import base_volume, cleanup_clones, template, template_source  # noqa: F401  (fixtures)
from tests.forms import BrowserLikeClient, csrf_client
from tests.unit.conftest import domain_row, forget  # noqa: F401  (fixtures: machines on the test driver)
from webvirt.domains.models import Domain


@pytest.fixture
def browser_like() -> Callable[[Any], BrowserLikeClient]:
    return csrf_client


@pytest.fixture
def machine(domain_row) -> Callable[[Any], Domain]:  # type: ignore[no-untyped-def]  # noqa: F811
    """A machine on the test driver, owned by `user` (as a clone of theirs would be)."""

    def make(user: Any, *, start: bool = False) -> Domain:
        row = domain_row("ppl", start=start)
        Domain.objects.filter(pk=row.pk).update(owner=user)
        return Domain.objects.get(pk=row.pk)

    return make
