"""Set a test provider user's groups: `manage.py provider_groups USERNAME [GROUP ...]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Set the groups of one of the test provider's people."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("groups", nargs="*")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.get(username=options["username"])
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in options["groups"]])
