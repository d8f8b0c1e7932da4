from django.apps import AppConfig


class WavesConfig(AppConfig):
    name = "webvirt.waves"
    label = "waves"
