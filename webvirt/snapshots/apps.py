from django.apps import AppConfig


class SnapshotsConfig(AppConfig):
    name = "webvirt.snapshots"
    label = "snapshots"
