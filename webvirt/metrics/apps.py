from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "webvirt.metrics"
    label = "metrics"
