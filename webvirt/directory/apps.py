from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "webvirt.directory"
    label = "directory"
    verbose_name = "LDAP sign-in"
