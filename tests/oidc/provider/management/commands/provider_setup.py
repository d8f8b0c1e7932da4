"""The test provider's clients and people: `manage.py provider_setup --redirect-uri URI [--redirect-uri URI]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from oauth2_provider.models import Application

from tests.oidc.provider.people import CLIENT, CLIENT_SECRET, EXPIRED_CLIENT, PEOPLE, TAMPERED_CLIENT


class Command(BaseCommand):
    help = "Create the test provider's clients (good, expired, tampered) and its people."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--redirect-uri", action="append", default=[])

    def handle(self, *args: Any, **options: Any) -> None:
        for client_id in (CLIENT, EXPIRED_CLIENT, TAMPERED_CLIENT):
            Application.objects.update_or_create(client_id=client_id, defaults={
                "name": client_id, "client_secret": CLIENT_SECRET, "client_type": Application.CLIENT_CONFIDENTIAL,
                "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
                "redirect_uris": " ".join(options["redirect_uri"]), "algorithm": Application.RS256_ALGORITHM,
                "skip_authorization": True})
        for username, first, last, groups in PEOPLE:
            user = User.objects.create_user(username, f"{username}@example.org", f"{username}-password",
                                            first_name=first, last_name=last)
            user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
