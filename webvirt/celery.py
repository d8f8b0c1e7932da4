"""The Celery application. Workers use plain blocking libvirt calls (see DESIGN.md)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webvirt.settings")

app = Celery("webvirt")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
