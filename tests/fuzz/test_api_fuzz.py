"""Schemathesis against the whole REST API: every operation, generated inputs, never a 5xx.

The schema is the one drf-spectacular serves; requests go to the project's WSGI application in this
process, as an administrator and as a non-staff user (API tokens), on a host for libvirt's test
driver whose state cache holds only this test's own domain, so an id the fuzzer guesses can never
name a domain that another test is using. Left out, because they would make libvirt reach other
machines: registering or editing hosts (POST/PUT/PATCH /api/v1/hosts/...) and creating storage
pools (netfs, iscsi and logical pools mount or log in to remote storage).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import connection
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings

from tests.conftest import TEST_URI, domain_xml
from webvirt.accounts.tokens import create_token
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db


def _schema() -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = get_wsgi_application()
    return (loaded.exclude(method=["POST", "PUT", "PATCH"], path_regex=r"^/api/v1/hosts/(\{id\}/)?$")
            .exclude(method="POST", path="/api/v1/hosts/{host_pk}/pools/"))


schema = _schema()


def _snapshot(conn: libvirt.virConnect, mine: set[str]) -> dict[str, Any]:
    """What exists on the shared test driver besides this test's own objects, and its state."""
    state: dict[str, Any] = {}
    for dom in conn.listAllDomains(0):
        if dom.name() not in mine:
            state[f"domain {dom.name()}"] = dom.state()[0]
    for net in conn.listAllNetworks(0):
        state[f"network {net.name()}"] = net.isActive()
    for pool in conn.listAllStoragePools(0):
        state[f"pool {pool.name()}"] = pool.isActive()
    for iface in conn.listAllInterfaces(0):
        state[f"interface {iface.name()}"] = iface.isActive()
    return state


@pytest.fixture(autouse=True)
def _keep_the_test_database_open() -> Iterator[None]:
    """A real WSGI handler closes the database connection after each request; Django's own test
    client stops it from doing so, and so must this (the test's transaction lives on it)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_host(admin, stranger, test_conn: libvirt.virConnect, forget) -> Iterator[Host]:  # type: ignore[no-untyped-def]
    """The test driver as a host whose cache holds one domain of this test's, owned by the stranger."""
    name = forget(f"fz-{admin.pk}-{id(test_conn) % 10000}")
    dom = test_conn.defineXML(domain_xml(name))
    host = Host.objects.create(name="fuzzhost", uri=TEST_URI, status=Host.ONLINE)
    sync_host(host)
    Domain.objects.filter(host=host).exclude(uuid=dom.UUIDString()).delete()
    Domain.objects.filter(host=host).update(owner=stranger)
    before = _snapshot(test_conn, {name})
    yield host
    # Whatever the fuzzer defined on the driver goes; what others' tests hold must be as it was.
    for other in test_conn.listAllDomains(0):
        if other.name() != name and f"domain {other.name()}" not in before:
            forget(other.name())
    after = _snapshot(test_conn, {name})
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v and not k.startswith("domain ")}
    assert not changed, f"fuzzing changed the shared test driver: {changed}"
    from webvirt.hosts.connections import manager

    manager.drop(host.target().key)


# Ten inputs per operation on PostgreSQL, which refuses input that SQLite takes (NUL characters, text
# where a number belongs); three on SQLite, for its own limits (integers past 64 bits). The tier is a
# third of the suite's time, and make test runs both databases (scripts/test.sh).
EXAMPLES = 10 if connection.vendor == "postgresql" else 3


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_makes_the_api_answer_5xx(case, fuzz_host, admin, stranger) -> None:  # type: ignore[no-untyped-def]
    for user in (admin, stranger):
        # A token per call: the fuzzer may revoke one through DELETE /api/v1/tokens/{id}/.
        key = create_token(user)[1]
        case.call_and_validate(headers={"Authorization": f"Token {key}"},
                               checks=[schemathesis.checks.not_a_server_error])
