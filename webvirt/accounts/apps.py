from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webvirt.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Connects the receiver that counts failed sign-ins.
        from webvirt.accounts import throttle  # noqa: F401
