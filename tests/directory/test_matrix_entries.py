"""The authorization matrix's entries for the LDAP settings routes, asked the way tests/security/test_matrix.py
asks them (the same world, roles, bodies and outcomes), for these routes only: the whole matrix also checks
the shared test driver, which only a run of its own may do."""

from __future__ import annotations

import pytest

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
from tests.security.test_matrix import MATRIX, ORDER, ROUTES, request_as
from webvirt.directory.models import LdapSettings

pytestmark = pytest.mark.django_db

DIRECTORY = [r for r in ROUTES if r.key.startswith("directory:")]


def test_the_directory_routes_are_these_two() -> None:
    assert {r.key for r in DIRECTORY} == {"directory:settings", "directory:test"}
    assert {r.pattern for r in DIRECTORY} == {"people/ldap/", "people/ldap/test/"}


@pytest.mark.parametrize("route", [pytest.param(r, id=r.pattern) for r in DIRECTORY])
def test_route(route: Route, world: World) -> None:  # noqa: F811
    entry = MATRIX[route.key]
    assert set(entry) == set(route.methods)
    got: dict[str, str] = {}
    for method in sorted(entry, key=ORDER.index):
        expected = dict(zip(ROLES, entry[method].split(), strict=True))
        got[method] = " ".join(request_as(route, method, role, world, expected[role]) for role in ROLES)
    assert got == entry, f"{route.key}: expected {entry}, got {got} (roles: {' '.join(ROLES)})"
    assert not LdapSettings.objects.exists()  # refused with a valid body, and an empty one saves nothing
