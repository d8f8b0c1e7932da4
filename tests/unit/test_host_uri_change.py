"""A host's stored password or key goes only to the address it was given for.

Whoever may edit a host could otherwise point its URI at a server of their own and collect the
stored credential from the connection test. So a new URI needs the credential entered again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_URI
from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db
PASSWORD = "s3cret-sasl-passw0rd"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAfake\n-----END OPENSSH PRIVATE KEY-----"
# The same test driver through the same daemon, written differently: another URI that answers.
OTHER_URI = (TEST_URI.replace("socket=/", "socket=//") if "socket=" in TEST_URI
             else "test+unix:///default?socket=/var/run/libvirt/libvirt-sock")
ENTER_AGAIN = "Enter the password again when you change the URI: the stored one is not sent to a new address."


@pytest.fixture(autouse=True)
def _drop_connections() -> Iterator[None]:
    yield
    for host in Host.objects.all():
        manager.drop(host.target().key)


def register(api, **fields) -> Host:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/hosts/", {"name": unique("host"), "uri": TEST_URI, **fields}, format="json")
    assert response.status_code == 201, response.content
    return Host.objects.get(pk=response.json()["id"])


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port on 127.0.0.1 standing in for a server that collects credentials; it records who came."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    came: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                came.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], came
    stop.set()
    thread.join()
    for conn in came:
        conn.close()
    server.close()


def test_a_new_uri_without_the_password_is_refused_and_nothing_is_saved(api):  # type: ignore[no-untyped-def]
    host = register(api, password=PASSWORD)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": OTHER_URI, "description": "moved"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": ENTER_AGAIN, "code": "invalid"}
    after = Host.objects.get(pk=host.pk)
    assert (after.uri, after.description, after.updated) == (TEST_URI, host.description, host.updated)
    assert after.target().password == PASSWORD
    assert AuditEntry.objects.get(action="host.update").outcome == AuditEntry.FAILED


def test_the_stored_password_is_never_sent_to_the_new_address(api, listener):  # type: ignore[no-untyped-def]
    port, came = listener
    host = register(api, password=PASSWORD, username="sasl")
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": f"qemu+tcp://127.0.0.1:{port}/system"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == ENTER_AGAIN
    assert came == []  # refused before any connection test: the new address never heard from us


def test_a_new_uri_with_the_password_entered_again_is_saved(api):  # type: ignore[no-untyped-def]
    host = register(api, password=PASSWORD)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": OTHER_URI, "password": "new-passw0rd"},
                         format="json")
    assert response.status_code == 200, response.content
    after = Host.objects.get(pk=host.pk)
    assert (after.uri, after.target().password) == (OTHER_URI, "new-passw0rd")


def test_a_stored_key_must_be_entered_again_too(api):  # type: ignore[no-untyped-def]
    host = register(api, ssh_key=KEY)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": OTHER_URI}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == ("Enter the private key again when you change the URI: the stored one is "
                                        "not sent to a new address.")
    both = register(api, password=PASSWORD, ssh_key=KEY)
    response = api.patch(f"/api/v1/hosts/{both.pk}/", {"uri": OTHER_URI, "password": PASSWORD}, format="json")
    assert response.json()["error"].startswith("Enter the private key again")
    assert api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": OTHER_URI, "ssh_key": KEY},
                     format="json").status_code == 200


def test_a_new_uri_is_fine_when_the_stored_credentials_are_removed_or_there_are_none(api):  # type: ignore[no-untyped-def]
    host = register(api, password=PASSWORD, ssh_key=KEY)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": OTHER_URI, "clear_credentials": True}, format="json")
    assert response.status_code == 200
    assert (response.json()["has_password"], response.json()["has_ssh_key"]) == (False, False)
    plain = register(api)
    assert api.patch(f"/api/v1/hosts/{plain.pk}/", {"uri": OTHER_URI}, format="json").status_code == 200


def test_other_edits_keep_the_stored_password_without_asking(api):  # type: ignore[no-untyped-def]
    host = register(api, password=PASSWORD)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"uri": f" {TEST_URI} ", "description": "same place"},
                         format="json")
    assert response.status_code == 200
    assert Host.objects.get(pk=host.pk).target().password == PASSWORD


def test_the_form_says_so_too(admin_client, api):  # type: ignore[no-untyped-def]
    host = register(api, password=PASSWORD)
    page = admin_client.post(f"/hosts/{host.pk}/edit/", {"name": host.name, "uri": OTHER_URI, "password": ""})
    assert page.status_code == 200
    assert ENTER_AGAIN in page.content.decode()
    assert Host.objects.get(pk=host.pk).uri == TEST_URI
