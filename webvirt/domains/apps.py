from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "webvirt.domains"
    label = "domains"
