from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webvirt.accounts import tokens
from webvirt.accounts.models import ApiToken
from webvirt.accounts.policy import Actor

DEFAULT_NAME = "manage.py apitoken"


class Command(BaseCommand):
    help = ("Print a new API token for USER. It replaces USER's earlier token of the same name; "
            "the key is shown only now (webvirt keeps a hash of it).")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default=DEFAULT_NAME, help=f"What the token is for (default: '{DEFAULT_NAME}').")
        parser.add_argument("--expires-days", type=int, default=None, metavar="N",
                            help="Days until the token stops working (default: never).")

    def handle(self, *args: Any, username: str, name: str, expires_days: int | None, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user named '{username}'.") from None
        if expires_days is not None and not 1 <= expires_days <= 3650:
            raise CommandError("--expires-days must be a number of days from 1 to 3650.")
        actor = Actor(user=user, via="cli")
        # Run again, the command rotates a script's token rather than piling up old ones.
        for old in ApiToken.objects.filter(user=user, name=name.strip()[:100]).select_related("user"):
            tokens.revoke(actor, old)
        _token, key = tokens.issue(actor, user, name=name,
                                   expires_in=timedelta(days=expires_days) if expires_days else None)
        self.stdout.write(key)
