"""Management commands: `apitoken` for scripts and `bootstrap` for the first run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_apitoken_prints_a_token_that_authenticates(admin, test_host):
    token = run("apitoken", "alice").strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/v1/hosts/")
    assert response.status_code == 200
    assert [h["name"] for h in response.json()["results"]] == ["testhost"]


def test_a_new_apitoken_replaces_the_old_one(admin):
    old = run("apitoken", "alice").strip()
    new = run("apitoken", "alice").strip()
    assert old != new
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert client.get("/api/v1/hosts/").status_code in (401, 403)


def test_apitoken_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match=r"There is no user named 'nobody'\."):
        run("apitoken", "nobody")


@pytest.fixture
def bootstrap_env(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WEBVIRT_ADMIN_USER", "root-admin")
    monkeypatch.setenv("WEBVIRT_ADMIN_PASSWORD", "bootstrap-password-1")
    yield
    for host in Host.objects.all():
        manager.drop(host.target().key)


def test_bootstrap_is_idempotent(bootstrap_env, client):
    first = run("bootstrap")
    second = run("bootstrap")
    users = get_user_model().objects.filter(is_superuser=True)
    assert [u.username for u in users] == ["root-admin"]
    assert "Created administrator 'root-admin'." in first and "Created administrator" not in second
    assert "bootstrap-password-1" not in first
    assert Host.objects.count() <= 1
    assert list(Host.objects.values_list("name", flat=True)) in ([], ["localhost"])
    assert client.login(username="root-admin", password="bootstrap-password-1")


def test_bootstrap_leaves_existing_hosts_alone(bootstrap_env, test_host):
    run("bootstrap")
    assert list(Host.objects.values_list("name", flat=True)) == ["testhost"]


def test_bootstrap_keeps_an_existing_administrator(bootstrap_env, admin, test_host):
    output = run("bootstrap")
    assert output == ""
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


def test_bootstrap_shows_a_generated_password_once(monkeypatch, db, test_host):
    monkeypatch.delenv("WEBVIRT_ADMIN_PASSWORD", raising=False)
    output = run("bootstrap")
    password = output.split("with password: ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert "with password" not in run("bootstrap")
