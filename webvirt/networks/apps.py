from django.apps import AppConfig


class NetworksConfig(AppConfig):
    name = "webvirt.networks"
    label = "networks"
