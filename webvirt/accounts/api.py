"""REST API for the audit trail (administrators only, read-only)."""

from __future__ import annotations

import django_filters
from rest_framework import serializers, viewsets

from webvirt.accounts import policy
from webvirt.accounts.models import AuditEntry


class AuditFilter(django_filters.FilterSet):
    username = django_filters.CharFilter(lookup_expr="iexact", label="User")
    action = django_filters.CharFilter(lookup_expr="istartswith", label="Action")
    object = django_filters.CharFilter(field_name="object_repr", lookup_expr="icontains", label="Object")
    outcome = django_filters.ChoiceFilter(choices=AuditEntry.OUTCOMES, empty_label="Any outcome")
    since = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte", label="Since")

    class Meta:
        model = AuditEntry
        fields = ["username", "action", "object", "outcome", "since"]


class AuditSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "created", "username", "action", "object_type", "object_id", "object_repr", "address",
                  "via", "outcome", "detail"]


class AuditViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditSerializer
    filterset_class = AuditFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        policy.require_admin(self.request.user)
        return AuditEntry.objects.all()
