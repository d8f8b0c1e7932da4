"""Our filter sets share their filters' set-up between requests (webvirt.filtering); each request's values,
errors and results stay its own."""

from __future__ import annotations

import uuid as uuidlib

import django_filters
import pytest
from django.http import QueryDict

from tests.people import unique
from webvirt.domains.filters import DomainFilter
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db


@pytest.fixture
def domains(db):  # type: ignore[no-untyped-def]
    host = Host.objects.create(name=unique("h"), uri="test:///default")
    return Domain.objects.bulk_create(
        Domain(host=host, uuid=str(uuidlib.uuid4()), name=name, state=state)
        for name, state in [("alpha-web", "running"), ("beta-web", "shutoff"), ("gamma-db", "running")])


def names(filters: DomainFilter) -> set[str]:
    assert filters.is_valid(), filters.errors
    return set(filters.qs.values_list("name", flat=True))


def test_each_request_gets_its_own_values_errors_and_rows(domains):
    wrong = DomainFilter(QueryDict("state=flying"), queryset=Domain.objects.all())
    assert not wrong.is_valid() and "state" in wrong.errors
    assert names(DomainFilter(QueryDict("state=running"), queryset=Domain.objects.all())) == {"alpha-web", "gamma-db"}
    assert names(DomainFilter(QueryDict("search=web&sort=-name"), queryset=Domain.objects.all())) == {
        "alpha-web", "beta-web"}
    again = DomainFilter(QueryDict("state=flying"), queryset=Domain.objects.all())
    assert again.errors == wrong.errors and again.form is not wrong.form


def test_a_method_filter_calls_its_own_filter_set(domains):
    first = DomainFilter(QueryDict("search=alpha"), queryset=Domain.objects.all())
    second = DomainFilter(QueryDict("search=gamma"), queryset=Domain.objects.filter(state="running"))
    assert first.filters["search"].parent is first and second.filters["search"].parent is second
    assert names(second) == {"gamma-db"} and names(first) == {"alpha-web"}
    assert not hasattr(DomainFilter.base_filters["search"], "parent")  # the shared filters stay untouched


def test_the_form_class_is_made_once(domains):
    one = DomainFilter(QueryDict("state=running"), queryset=Domain.objects.all())
    other = DomainFilter(QueryDict(""), queryset=Domain.objects.all())
    assert type(one.form) is type(other.form)
    assert one.form.fields["state"] is not other.form.fields["state"]  # each form has fields of its own


def test_choices_that_depend_on_the_request_get_a_form_class_per_request(domains):
    class ByRequest(DomainFilter):
        host = django_filters.ModelChoiceFilter(queryset=lambda request: Host.objects.filter(name=request))

    mine = ByRequest(QueryDict(""), queryset=Domain.objects.all(), request=domains[0].host.name)
    theirs = ByRequest(QueryDict(""), queryset=Domain.objects.all(), request="someone-else")
    assert type(mine.form) is not type(theirs.form)
    assert list(mine.form.fields["host"].queryset) == [domains[0].host]
    assert list(theirs.form.fields["host"].queryset) == []
