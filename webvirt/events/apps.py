from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "webvirt.events"
    label = "events"
