"""First-run set-up for `make run`: the first administrator and the local host. Safe to run again."""

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand

from webvirt.accounts.policy import Actor
from webvirt.hosts import services
from webvirt.hosts.models import Host
from webvirt.virt.errors import VirtError


class Command(BaseCommand):
    help = "Create the first administrator and register the local libvirt host, unless they exist."

    def handle(self, *args: Any, **options: Any) -> None:
        admin = self.ensure_admin()
        if not Host.objects.exists():
            self.register_local_host(admin)

    def ensure_admin(self) -> AbstractBaseUser:
        users = get_user_model().objects
        existing = users.filter(is_superuser=True).order_by("pk").first()
        if existing:
            return existing
        username = os.environ.get("WEBVIRT_ADMIN_USER", "admin")
        password = os.environ.get("WEBVIRT_ADMIN_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        admin = users.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"Created administrator '{username}' with password: {password}\n"
                "This is shown only once. Change it after logging in."))
        else:
            self.stdout.write(f"Created administrator '{username}'.")
        return admin

    def register_local_host(self, admin: AbstractBaseUser) -> None:
        actor = Actor(user=admin, via="cli")
        for uri in ("qemu:///system", "qemu:///session"):
            try:
                host = services.create_host(actor, services.HostData(name="localhost", uri=uri,
                                                                     description="This machine"))
            except VirtError as exc:
                self.stdout.write(f"{uri} is not reachable: {exc}")
                continue
            self.stdout.write(f"Registered the local host as '{host.name}' ({uri}).")
            return
        self.stdout.write(self.style.WARNING("No local libvirt answered; add a host from the Hosts page."))
