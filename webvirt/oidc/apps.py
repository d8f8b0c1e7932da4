from django.apps import AppConfig


class OidcConfig(AppConfig):
    name = "webvirt.oidc"
    label = "oidc"
    verbose_name = "OpenID Connect sign-in"
