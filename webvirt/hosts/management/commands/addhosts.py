"""Register many hosts at once from a CSV file: all of them, or none."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from webvirt.accounts.policy import Actor, Denied
from webvirt.hosts import services
from webvirt.virt.errors import VirtError


class Command(BaseCommand):
    help = ("Register the hosts listed in FILE, a CSV file whose header names its columns: name and uri, and "
            "optionally description, username and migration_uri (no passwords or keys). The file is checked "
            "as a whole, then every host is tested with one connection (16 at a time); if any fails, nothing "
            "is registered and every failure is listed with its line.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="The CSV file ('-' is not accepted: the lines are reported).")
        parser.add_argument("--no-check", action="store_true",
                            help="Register without connecting; the event watchers connect and load the domains.")
        parser.add_argument("--user", metavar="USERNAME",
                            help="Who registers them, in the audit trail (default: the first superuser).")

    def handle(self, *args: Any, file: Path, no_check: bool, user: str | None, **options: Any) -> None:
        actor = Actor(user=self.acting_user(user), via="cli")
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file} could not be read: {exc}") from None
        started = time.monotonic()
        try:
            rows = services.read_host_file(text)
            hosts = services.create_hosts(actor, rows, check=not no_check)
        except (VirtError, Denied) as exc:
            raise CommandError(f"{file}: {exc.message}") from None
        domains = sum(host.domains.count() for host in hosts)
        how = "without testing them" if no_check else f"with {domains} domains"
        self.stdout.write(f"Registered {len(hosts)} hosts {how} in {time.monotonic() - started:.1f} s.")

    @staticmethod
    def acting_user(username: str | None) -> User:
        users = User.objects.filter(is_active=True)
        found = users.filter(username=username).first() if username else \
            users.filter(is_superuser=True).order_by("pk").first()
        if found is None:
            raise CommandError(f"There is no active user named '{username}'." if username else
                               "There is no superuser yet: create one (manage.py bootstrap) or name one with --user.")
        return found
