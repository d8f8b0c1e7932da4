"""The authorization matrix's entries for the People routes, asked the way tests/security/test_matrix.py asks
them (the same world, roles, bodies and outcomes), for these routes only.

The whole matrix also checks that nothing appeared on the shared test driver, which only a run of its own
may do; here, what a refused request could have made is people and groups, and those are checked.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from tests.security.conftest import (  # noqa: F401  (the fixtures the world is made of)
    ROLES,
    World,
    base_volume,
    cleanup_clones,
    domain_row,
    forget,
    libvirt_objects,
    template,
    template_source,
    world,
)
from tests.security.routes import Route
from tests.security.test_matrix import MATRIX, ORDER, ROUTES, _a_person, request_as  # noqa: F401  (_a_person: autouse)

pytestmark = pytest.mark.django_db

PEOPLE = [r for r in ROUTES if r.key.startswith(("people:", "api:user-", "api:group-"))]


def test_every_people_route_is_one_of_these() -> None:
    assert {r.key for r in PEOPLE} == {key for key in MATRIX if key.startswith(("people:", "api:user-", "api:group-"))}
    assert len(PEOPLE) == 18


@pytest.mark.parametrize("route", [pytest.param(r, id=r.pattern) for r in PEOPLE])
def test_route(route: Route, world: World) -> None:  # noqa: F811
    entry = MATRIX[route.key]
    assert set(entry) == set(route.methods)
    got: dict[str, str] = {}
    for method in sorted(entry, key=ORDER.index):
        expected = dict(zip(ROLES, entry[method].split(), strict=True))
        got[method] = " ".join(request_as(route, method, role, world, expected[role]) for role in ROLES)
    assert got == entry, f"{route.key}: expected {entry}, got {got} (roles: {' '.join(ROLES)})"
    assert not get_user_model().objects.filter(username="mx-person-new").exists()
    assert not get_user_model().objects.filter(first_name="mx-changed").exists()
    assert not Group.objects.filter(name__in=["mx-group-new", "mx-group-renamed"]).exists()
    assert not get_user_model().objects.filter(is_superuser=True).exclude(username="alice").exists()
