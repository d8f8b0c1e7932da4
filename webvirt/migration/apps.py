from django.apps import AppConfig


class MigrationConfig(AppConfig):
    name = "webvirt.migration"
    label = "migration"
