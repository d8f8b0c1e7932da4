"""Fixtures for the fuzzing tier: the matrix's people and objects, and the test driver's host."""

from __future__ import annotations

from tests.catalog.conftest import base_volume, cleanup_clones, template, template_source  # noqa: F401
from tests.security.conftest import libvirt_objects, world  # noqa: F401
from tests.unit.conftest import domain_row, forget  # noqa: F401
