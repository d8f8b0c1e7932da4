from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "webvirt.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Connects the receiver that counts failed sign-ins.
        from webvirt.accounts import throttle  # noqa: F401
        from webvirt.changes import install_after_migrate

        # After every migrate, since altering a table on SQLite drops its triggers.
        post_migrate.connect(install_after_migrate, sender=self, dispatch_uid="webvirt.changes")
