"""Usage history: one table of rollup tiers, each row the average and maximum of every figure over a step.

Rows are keyed by webvirt's identity of the object (a Domain's or a Host's id), so a domain's series
goes on across a migration. Tier 0 holds the collector's samples; the others are rolled up from the
tier below (webvirt.metrics.store).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webvirt.virt.stats import DOMAIN_SERIES, HOST_SERIES

SERIES = tuple(dict.fromkeys(DOMAIN_SERIES + HOST_SERIES))


class Tier:
    def __init__(self, level: int, step: int, keep: int) -> None:
        self.level, self.step, self.keep = level, step, keep


# 10 s samples for an hour, 1 min for a day, 30 min for a week, 6 h for a year.
TIERS = (Tier(0, settings.WEBVIRT_METRICS_INTERVAL, 3600), Tier(1, 60, 86400), Tier(2, 1800, 7 * 86400),
         Tier(3, 21600, 366 * 86400))


class Point(models.Model):
    DOMAIN, HOST = "d", "h"

    kind = models.CharField(max_length=1)
    obj = models.IntegerField()
    tier = models.SmallIntegerField()
    t = models.IntegerField(help_text="Start of the step, in seconds since the epoch.")
    n = models.IntegerField(default=1, help_text="Samples in it.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "obj", "tier", "t"], name="point_unique")]
        indexes = [models.Index(fields=["tier", "t"])]

    def __str__(self) -> str:
        return f"{self.kind}{self.obj} tier {self.tier} at {self.t}"


for _name in SERIES:  # each figure's average, and its maximum
    Point.add_to_class(_name, models.FloatField(null=True))
    Point.add_to_class(f"{_name}_max", models.FloatField(null=True))
