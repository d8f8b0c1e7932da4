from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "webvirt.catalog"
    label = "catalog"
