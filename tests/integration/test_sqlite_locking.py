"""Two writers at once on the same row never meet "database is locked".

On SQLite a transaction that reads first and writes second (update_or_create) cannot turn its read
into a write once another connection has committed in between: it fails at once, whatever the busy
timeout. settings.py begins every transaction IMMEDIATE (write lock first), so the second writer
waits its turn instead. Real threads, each with its own connection to the file-backed test database;
on PostgreSQL the same test shows the row lock doing the same.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from tests import people
from webvirt.catalog.models import Quota

ROUNDS = 60


def _write_quotas(user_pk: int, first: int, errors: list[BaseException]) -> None:
    try:
        for i in range(ROUNDS):
            Quota.objects.update_or_create(user_id=user_pk, defaults={"instances": first + i, "vcpus": first})
    except Exception as exc:  # collected, for the assertion in the main thread
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_two_writers_update_or_create_the_same_quota_without_a_lock_error() -> None:
    if connection.vendor == "sqlite":
        assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    user = people.make_user("bob")
    Quota.objects.create(user=user, instances=0)
    errors: list[BaseException] = []
    writers = [threading.Thread(target=_write_quotas, args=(user.pk, first, errors)) for first in (1000, 2000)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)

    assert errors == []
    quota = Quota.objects.get(user=user)
    # Whichever writer was last, its row is whole: both fields come from the same update.
    assert quota.instances == quota.vcpus + ROUNDS - 1
    assert Quota.objects.filter(user=user).count() == 1
