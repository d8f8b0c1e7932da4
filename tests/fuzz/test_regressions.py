"""Server errors found by the authorization matrix and the fuzzer, each kept as an ordinary test."""

from __future__ import annotations

import pytest

from tests.people import api_for, client_for

pytestmark = pytest.mark.django_db


def test_an_action_with_a_format_suffix_is_not_found_not_a_server_error(world):
    """`POST /api/v1/domains/<id>/start.json` reached the action with a `format` argument it does not
    take (TypeError, 500), for anyone, even a stranger to the domain. The API has no `.json` twins now."""
    for role in ("stranger", "owner", "admin"):
        client = api_for(world.users[role])
        assert client.post(f"/api/v1/domains/{world.domain.pk}/start.json").status_code == 404
        assert client.get(f"/api/v1/domains/{world.domain.pk}.json").status_code == 404
    assert api_for(world.users["owner"]).post(f"/api/v1/domains/{world.domain.pk}/start/").status_code == 200


def test_deleting_a_host_that_has_templates_answers_409(world):
    """A template's host is protected (on_delete=PROTECT): the ProtectedError was a 500, on the API and
    on the host's delete page alike."""
    response = api_for(world.users["admin"]).delete(f"/api/v1/hosts/{world.host.pk}/")
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert "delete them before the host" in response.json()["error"]
    page = client_for(world.users["admin"]).post(f"/hosts/{world.host.pk}/delete/", follow=True)
    assert page.status_code == 200 and "delete them before the host" in page.content.decode()
    world.host.refresh_from_db()  # still there
