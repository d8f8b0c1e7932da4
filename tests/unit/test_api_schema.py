"""The OpenAPI schema and its browsable docs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_schema_answers_and_names_the_domain_actions(api):
    response = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert {"/api/v1/hosts/", "/api/v1/hosts/{id}/", "/api/v1/domains/", "/api/v1/domains/{id}/",
            "/api/v1/domains/{id}/xml/", "/api/v1/domains/{id}/autostart/", "/api/v1/audit/"} <= set(paths)
    for verb in ("start", "shutdown", "reboot", "suspend", "resume", "destroy", "reset"):
        assert paths[f"/api/v1/domains/{{id}}/{verb}/"]["post"]["operationId"] == f"domains_{verb}"


def test_the_schema_never_offers_the_secrets_for_reading(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    host = schema["components"]["schemas"]["Host"]["properties"]
    assert host["password"]["writeOnly"] and host["ssh_key"]["writeOnly"]
    assert {"has_password", "has_ssh_key"} <= set(host)


def test_the_docs_page_renders(admin_client):
    response = admin_client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert "swagger" in response.content.decode().lower()
