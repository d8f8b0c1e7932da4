"""The domain list's search, filters and sort, shared by the HTML list and the API."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from webvirt.domains.models import Domain
from webvirt.hosts.models import Host


class DomainFilter(django_filters.FilterSet):
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
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(uuid__istartswith=value))
