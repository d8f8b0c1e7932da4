"""The login page's "Sign in with …" button: `{% load oidc %}{% oidc_button next %}`."""

from __future__ import annotations

from typing import Any

from django import template

from webvirt.oidc.models import OidcSettings

register = template.Library()


@register.inclusion_tag("oidc/_button.html")
def oidc_button(next_url: str = "") -> dict[str, Any]:
    config = OidcSettings.load()
    return {"show": config.ready, "label": config.button_label, "next": next_url}
