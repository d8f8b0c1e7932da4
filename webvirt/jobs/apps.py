from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webvirt.jobs"
    label = "jobs"
