"""The people every tier's tests use, and the ways to act as them.

- alice (`admin`): an administrator; sees and does everything.
- bob (`bob`): a self-service user. Tests grant him templates (the grantee), and he owns the clones
  he makes (the owner).
- dave (`dave`): a self-service user in the group "teachers", for grants and quotas by group.
- charlie (`stranger`): logged in, owns nothing and is granted nothing.

The fixtures live in tests/conftest.py; the helpers here make a client acting as any of them, and
names no other test (nor another run on the shared test driver) uses.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from webvirt.accounts.tokens import create_token

ADMIN_PASSWORD = "alice-password-1"
# The real hasher costs most of a second per user; tests that type a password into a live server
# (browser tests) keep it, because that server's own settings must be able to check the hash.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def unique(prefix: str = "wvt") -> str:
    """A name nobody else uses: the test driver behind test+unix:///default is shared by the whole run."""
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def make_admin() -> Any:
    return get_user_model().objects.create_superuser("alice", "", ADMIN_PASSWORD)


def make_user(name: str, group: str = "") -> Any:
    user = get_user_model().objects.create_user(name, "", f"{name}-password-1")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def client_for(user: Any) -> Client:
    """A browser-like client logged in as `user` (HTML pages, session authentication)."""
    client = Client()
    client.force_login(user)
    return client


def api_for(user: Any) -> APIClient:
    """An API client authenticating as `user` with a token, the way scripts do."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user)[1]}")
    return client
