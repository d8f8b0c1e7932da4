"""`GET /metrics`: the latest figures of every host and domain in Prometheus' text format.

Written with `prometheus_client` (its exposition format and escaping), from the latest tier-0 rows: a
scrape reads the database, never libvirt. It answers an administrator's API token, or a client from
an address in WEBVIRT_METRICS_ALLOW (or an administrator's session); anyone else gets 401.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.accounts.tokens import user_for_token
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.metrics.models import Point
from webvirt.virt.stats import DOMAIN_SERIES, HOST_SERIES

log = logging.getLogger(__name__)
HELP = {"cpu_percent": "CPU use, percent of its vCPUs (a host: of all its CPUs)",
        "cpu_host_percent": "CPU use, percent of its host's CPUs", "memory_mib": "Memory used, MiB",
        "balloon_mib": "Memory the guest has (balloon), MiB", "memory_total_mib": "Memory, MiB",
        "disk_read_bps": "Disk reads, bytes per second", "disk_write_bps": "Disk writes, bytes per second",
        "disk_read_iops": "Disk reads per second", "disk_write_iops": "Disk writes per second",
        "net_rx_bps": "Network received, bytes per second", "net_tx_bps": "Network sent, bytes per second"}


class Latest(Collector):
    """Each object's newest sample, one gauge per figure."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        hosts = dict(Host.objects.values_list("pk", "name"))
        domains = {pk: (hosts.get(host_id, ""), name, uuid, owner or "") for pk, name, uuid, host_id, owner in
                   Domain.objects.values_list("pk", "name", "uuid", "host_id", "owner__username")}
        for kind, names, labels in ((Point.HOST, HOST_SERIES, ["host"]),
                                    (Point.DOMAIN, DOMAIN_SERIES, ["host", "domain", "uuid", "owner"])):
            families = {n: GaugeMetricFamily(f"webvirt_{'host' if kind == Point.HOST else 'domain'}_{n}", HELP[n],
                                             labels=labels) for n in names}
            for point in _newest(kind):
                label_values = (hosts.get(point.obj, ""),) if kind == Point.HOST else domains.get(point.obj)
                if not label_values or not label_values[0]:
                    continue  # removed since: its history stays a while, its current figures go
                for name, family in families.items():
                    value = getattr(point, name)
                    if value is not None:
                        family.add_metric(list(label_values), value, timestamp=point.t)
            yield from families.values()


def _newest(kind: str) -> list[Point]:
    newest = Point.objects.filter(kind=kind, tier=0).order_by("-t").values_list("t", flat=True).first()
    if newest is None:
        return []
    # Objects not sampled in the last three passes no longer run: they are left out.
    since = newest - 3 * settings.WEBVIRT_METRICS_INTERVAL
    rows = Point.objects.filter(kind=kind, tier=0, t__gte=since).order_by("obj", "-t")
    seen: dict[int, Point] = {}
    for row in rows:
        seen.setdefault(row.obj, row)
    return list(seen.values())


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """WEBVIRT_METRICS_ALLOW as networks; an entry that is none is left out, and said so in the log."""
    networks = []
    for entry in settings.WEBVIRT_METRICS_ALLOW:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("WEBVIRT_METRICS_ALLOW: %r is not an address or a network; it is ignored", entry)
    return networks


def allowed(request: HttpRequest) -> bool:
    address = Actor.from_request(request).address
    if address and any(ipaddress.ip_address(address) in net for net in allowed_networks()):
        return True
    header = request.headers.get("Authorization", "").split()
    user = user_for_token(header[1]) if len(header) == 2 and header[0].lower() in ("token", "bearer") else None
    user = user or request.user
    return policy.is_admin(user)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse("An administrator's API token (Authorization: Token <key>) or an allowed address "
                            "is needed.\n", status=401, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Latest())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
