from django.apps import AppConfig


class InstallConfig(AppConfig):
    name = "webvirt.install"
    label = "install"
