"""Add a redirect URI to every test client: `manage.py provider_redirect URI`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from oauth2_provider.models import Application


class Command(BaseCommand):
    help = "Let every test client redirect to one more URI."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uri")

    def handle(self, *args: Any, **options: Any) -> None:
        for application in Application.objects.all():
            uris = application.redirect_uris.split()
            if options["uri"] not in uris:
                application.redirect_uris = " ".join([*uris, options["uri"]])
                application.save(update_fields=["redirect_uris"])
