from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "webvirt.storage"
    label = "storage"
