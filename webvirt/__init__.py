"""webvirt: a web console for libvirt."""

from webvirt.celery import app as celery_app

__all__ = ["celery_app"]
