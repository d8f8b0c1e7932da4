"""The base of our lists' filter sets: django-filter's FilterSet, without its per-request rebuilding.

For every request, django-filter deep-copies each filter (with its choices and querysets), builds each
filter's form field again, and makes a new form class out of them: about 2 ms of CPU per list request
(bench/list_load.py), more than the list's own filtering. None of that depends on the request. Here each
request gets shallow copies of the filters (a filter's only per-request state is its `parent`, where a
`method=` filter finds its method), and the form class is made once per filter set class, unless a filter's
choices depend on the request. The form itself is still new per request (with copies of the fields), so its
values, errors and any choices a view narrows on it are the request's own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from django_filters.filters import FilterMethod


class FilterSet(django_filters.FilterSet):
    _form_classes: ClassVar[dict[type, type[forms.Form]]] = {}

    def __init__(self, data: Mapping[str, Any] | None = None, queryset: QuerySet | None = None, *,
                 request: Any = None, prefix: str | None = None) -> None:
        # django-filter's own __init__, with copy.copy where it has copy.deepcopy.
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {name: _copy(filter_) for name, filter_ in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self

    def get_form_class(self) -> type[forms.Form]:
        if any(callable(getattr(filter_, "queryset", None)) for filter_ in self.filters.values()):
            # A choice filter whose choices depend on the request (a callable queryset gets the request):
            # its field, and so the form class, must be the request's own.
            return super().get_form_class()
        cls = type(self)
        if cls not in self._form_classes:
            self._form_classes[cls] = super().get_form_class()
        return self._form_classes[cls]


def _copy(filter_: django_filters.Filter) -> django_filters.Filter:
    copied = copy.copy(filter_)
    if isinstance(filter_.__dict__.get("filter"), FilterMethod):
        copied.filter = FilterMethod(copied)  # bound to the filter it serves, as django-filter's deep copy does
    return copied
