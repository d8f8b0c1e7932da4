"""Clones that expire are removed with their disks; owners extend them within the template's limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.catalog.conftest import clone, domain_names, pool_volumes, run
from tests.people import client_for
from webvirt.accounts.models import AuditEntry
from webvirt.catalog import services
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db(transaction=True)


def local(moment) -> str:  # type: ignore[no-untyped-def]
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def test_expired_clones_are_removed_with_their_volumes_and_it_is_recorded(template, bob, test_conn):
    template.users.add(bob)
    run(clone(bob, template, count=3, start=True, expires_at=(timezone.now() + timedelta(days=1)).isoformat()))
    Domain.objects.filter(name__in=[f"{template.name}-01", f"{template.name}-02"]).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    assert sorted(services.expire_due()) == [f"{template.name}-01", f"{template.name}-02"]
    assert domain_names(test_conn, template.name) == [f"{template.name}-03"]
    assert pool_volumes(test_conn, template.name) == [f"{template.name}-03-vda.qcow2"]
    entries = AuditEntry.objects.filter(action="domain.remove", object_repr=f"{template.name}-01")
    assert entries.count() == 1 and entries.get().detail.startswith("expired; deleted volumes:")
    assert entries.get().via == "task" and entries.get().outcome == "ok"


def test_an_owner_extends_the_expiry_within_the_templates_max_lifetime(template, bob):
    template.users.add(bob)
    run(clone(bob, template, expires_at=(timezone.now() + timedelta(days=1)).isoformat()))
    mine = Domain.objects.get(owner=bob)
    later = timezone.now() + timedelta(days=9)
    page = client_for(bob).post(f"/domains/{mine.pk}/extend/", {"expires_at": local(later)}, follow=True)
    assert f"{mine.name} now expires at {local(later).replace('T', ' ')}." in page.content.decode()
    mine.refresh_from_db()
    assert abs((mine.expires_at - later).total_seconds()) < 60


def test_an_owner_is_refused_an_expiry_beyond_the_templates_max_lifetime(template, bob):
    template.users.add(bob)
    first = timezone.now() + timedelta(days=1)
    run(clone(bob, template, expires_at=first.isoformat()))
    mine = Domain.objects.get(owner=bob)
    page = client_for(bob).post(f"/domains/{mine.pk}/extend/",
                                {"expires_at": local(timezone.now() + timedelta(days=11))}, follow=True)
    assert "at most (10 days). Ask an administrator for longer." in page.content.decode()
    mine.refresh_from_db()
    assert abs((mine.expires_at - first).total_seconds()) < 1


def test_someone_elses_clone_cannot_be_extended(template, bob, dave):
    template.users.add(bob)
    run(clone(bob, template, expires_at=(timezone.now() + timedelta(days=1)).isoformat()))
    bobs = Domain.objects.get(owner=bob)
    response = client_for(dave).post(f"/domains/{bobs.pk}/extend/",
                                     {"expires_at": local(timezone.now() + timedelta(days=2))})
    assert response.status_code == 404
    assert Domain.objects.get(pk=bobs.pk).expires_at == bobs.expires_at  # refused: nothing changed


def test_the_clone_form_refuses_an_expiry_beyond_the_limit_and_starts_nothing(template, bob):
    template.users.add(bob)
    page = client_for(bob).post(f"/templates/{template.pk}/", {
        "count": 1, "name_pattern": f"{template.name}-{{n}}", "mode": "linked",
        "expires_at": local(timezone.now() + timedelta(days=30))})
    assert page.status_code == 200
    assert f"Clones of {template.name} may live at most 10 days." in page.content.decode()
    assert not Domain.objects.filter(template=template).exists()
