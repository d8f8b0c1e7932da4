"""X-Forwarded-Proto makes a request secure only when our own proxy sent it."""

from __future__ import annotations

import pytest


@pytest.fixture
def behind_proxy(settings):  # type: ignore[no-untyped-def]
    settings.WEBVIRT_TRUSTED_PROXIES = ["127.0.0.9"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000


@pytest.mark.django_db
def test_a_client_cannot_say_https_itself(client, behind_proxy):  # type: ignore[no-untyped-def]
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers


@pytest.mark.django_db
def test_our_proxy_can(client, behind_proxy):  # type: ignore[no-untyped-def]
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="127.0.0.9")
    assert response.status_code == 200 and "Strict-Transport-Security" in response.headers
