"""The domain list's search, filters and sort, shared by the HTML list and the API."""

from __future__ import annotations

import django_filters
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from webvirt.domains.models import Domain
from webvirt.filtering import FilterSet
from webvirt.hosts.models import Host


class DomainFilter(FilterSet):
    search = django_filters.CharFilter(method="filter_search", label="Search")
    host = django_filters.ModelChoiceFilter(queryset=Host.objects.all(), empty_label="All hosts")
    state = django_filters.ChoiceFilter(choices=Domain.STATES, empty_label="Any state")
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("host__name", "host"), ("state", "state"), ("vcpus", "vcpus"),
                ("memory_mib", "memory"), ("cpu_percent", "cpu"), ("memory_used_mib", "used"),
                ("state_changed", "changed")),
        label="Sort",
    )

    class Meta:
        model = Domain
        fields = ["search", "host", "state"]

    def filter_search(self, queryset: QuerySet, _name: str, value: str) -> QuerySet:
        return search(queryset, value)


# SQLite's search index (migration 0006): an FTS5 trigram table over name and uuid.
FTS_CANDIDATES = "SELECT rowid FROM domains_domain_search WHERE domains_domain_search MATCH %s"


def search(queryset: QuerySet[Domain], value: str) -> QuerySet[Domain]:
    """The domains whose name contains `value` or whose UUID starts with it, ignoring case.

    The match is always the LIKE below. On SQLite, a text of 3 characters or more first narrows the rows
    through the trigram index (a phrase query finds every row with the text in its name or UUID, folding
    case at least as widely as LIKE does, so no match is lost); PostgreSQL's trigram indexes serve the
    LIKE itself. Either way a search over 10,000 domains reads the matching rows, not all of them.
    """
    value = value.strip()
    if not value:
        return queryset
    matches = Q(name__icontains=value) | Q(uuid__istartswith=value)
    if connections[queryset.db].vendor == "sqlite" and len(value) >= 3 and "\x00" not in value:
        phrase = '"' + value.replace('"', '""') + '"'
        matches &= Q(pk__in=RawSQL(FTS_CANDIDATES, [phrase]))
    return queryset.filter(matches)
