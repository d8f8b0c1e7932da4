from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webvirt.jobs"
    label = "jobs"

    def ready(self) -> None:
        # Every app keeps its job functions in `<app>/jobs.py`; importing them registers them.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("jobs")
