"""Who may see which usage figures, and the series the graphs and the API answer with."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import Avg

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.metrics import store
from webvirt.metrics.models import TIERS, Point
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.stats import DOMAIN_SERIES, HOST_SERIES

TOP = 10


def _range(name: str) -> str:
    if name not in store.RANGES:
        raise VirtError(f"'{errors.quote(name)}' is not a range; use one of {', '.join(store.RANGES)}.",
                        errors.INVALID)
    return name


def domain_series(actor: Actor, domain: Domain, range_name: str) -> dict[str, Any]:
    """An owner sees their own domains' figures; administrators every domain's."""
    policy.require(actor.user, policy.VIEW, domain)
    return store.series(Point.DOMAIN, domain.pk, _range(range_name), DOMAIN_SERIES)


def host_series(actor: Actor, host: Host, range_name: str) -> dict[str, Any]:
    """A host's CPU and memory, and the CPU share of its busiest domains over the range (administrators)."""
    policy.require_admin(actor.user)
    answer = store.series(Point.HOST, host.pk, _range(range_name), HOST_SERIES)
    answer["top"] = top_domains(host, range_name)
    return answer


def top_domains(host: Host, range_name: str) -> list[dict[str, Any]]:
    seconds, level = store.RANGES[range_name]
    ids = dict(Domain.objects.filter(host=host).values_list("pk", "name"))
    busiest = (Point.objects.filter(kind=Point.DOMAIN, obj__in=ids, tier=level, t__gte=int(time.time()) - seconds)
               .values("obj").annotate(avg=Avg("cpu_host_percent")).exclude(avg=None).order_by("-avg")[:TOP])
    return [{"id": row["obj"], "name": ids[row["obj"]],
             "cpu_host_percent": store.series(Point.DOMAIN, row["obj"], range_name, ("cpu_host_percent",))
             ["series"]["cpu_host_percent"]} for row in busiest]


def may_watch(user: Any, kind: str, obj: int) -> bool:
    """May `user`'s page receive live samples of this object (a WebSocket subscription)?"""
    if kind == Point.HOST:
        return policy.is_admin(user)
    if kind == Point.DOMAIN:
        return policy.visible(user, Domain.objects.filter(pk=obj)).exists()
    return False


def step_seconds() -> int:
    return TIERS[0].step
