"""Existing DRF tokens keep working: each clear key of rest_framework.authtoken is stored hashed
as an API token, and then removed from that table, which nothing reads any more.

Raw SQL, because rest_framework.authtoken is no longer an installed app; a database that never
had its table has nothing to import.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import TYPE_CHECKING

from django.db import migrations
from django.utils import timezone

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations.state import StateApps

OLD_TABLE = "authtoken_token"


def import_keys(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, created, user_id FROM {OLD_TABLE}")
        rows = cursor.fetchall()
    for key, created, user_id in rows:
        token = ApiToken.objects.create(user_id=user_id, name="from before tokens were hashed", prefix=key[:8],
                                        digest=hashlib.sha256(key.encode()).hexdigest())
        if timezone.is_naive(created):
            created = timezone.make_aware(created, UTC)  # SQLite keeps UTC without saying so
        ApiToken.objects.filter(pk=token.pk).update(created=created)  # created is auto_now_add
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {OLD_TABLE}")  # the clear keys must not outlive the import


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_api_token")]
    operations = [migrations.RunPython(import_keys, migrations.RunPython.noop)]
