"""Template helpers shared by every page."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from webvirt.virt.domains import STATE_LABELS

register = template.Library()


@register.filter
def mib(value: int | None) -> str:
    """Memory in MiB as a person reads it: 512 MiB, 2 GiB, 1.5 GiB."""
    if value is None:
        return "—"
    if value >= 1024:
        gib = value / 1024
        return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"
    return f"{value} MiB"


@register.filter
def state_label(state: str) -> str:
    """A state as the badges write it: "shut off", not libvirt's "shutoff"."""
    return STATE_LABELS.get(state, state)


@register.simple_tag(takes_context=True)
def sort_link(context: template.Context, key: str, label: str) -> str:
    """A column header that sorts by `key`, and reverses when it already does."""
    request = context["request"]
    current = request.GET.get("sort", "")
    query = request.GET.copy()
    query.pop("page", None)
    query["sort"] = f"-{key}" if current == key else key
    arrow = " ▲" if current == key else " ▼" if current == f"-{key}" else ""
    return format_html('<a href="?{}" class="sort">{}{}</a>', query.urlencode(), label, arrow)
