from django.apps import AppConfig


class ConsolesConfig(AppConfig):
    name = "webvirt.consoles"
    label = "consoles"
