from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "webvirt.hosts"
    label = "hosts"
