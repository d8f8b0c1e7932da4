from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "webvirt.people"
    label = "people"
