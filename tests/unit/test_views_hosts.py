"""The host pages: list, detail, add and edit with a connection test, delete; secrets never shown."""

from __future__ import annotations

import time

import pytest

from tests.conftest import TEST_URI
from tests.people import unique
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db
SECRET_PASSWORD = "s3cret-sasl-passw0rd"
SECRET_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAfake\n-----END OPENSSH PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def _drop_connections():  # type: ignore[no-untyped-def]
    yield
    for host in Host.objects.all():
        manager.drop(host.target().key)


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


def add(client, **fields):  # type: ignore[no-untyped-def]
    return client.post("/hosts/add/", {"name": unique("host"), "uri": TEST_URI, **fields})


@pytest.fixture
def secret_host(admin_client, test_conn) -> Host:  # type: ignore[no-untyped-def]
    add(admin_client, name="keyed", password=SECRET_PASSWORD, ssh_key=SECRET_KEY)
    return Host.objects.get(name="keyed")


def test_the_host_list_shows_each_host_with_its_counts(admin_client, domain_row):
    domain_row(start=True)
    response = admin_client.get("/hosts/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "testhost" in page and f"<code>{TEST_URI}</code>" in page
    assert 'href="/hosts/add/"' in page


def test_the_host_page_shows_what_the_host_reports(admin_client, test_host):
    response = admin_client.get(f"/hosts/{test_host.pk}/")
    assert response.status_code == 200
    assert response.context["facts"]["hypervisor"] == "TEST"
    assert "TEST" in response.content.decode()
    test_host.refresh_from_db()
    assert test_host.status == Host.ONLINE and test_host.facts_updated is not None


def test_the_page_of_a_silent_host_says_so_and_still_renders(admin_client, hung_host, monkeypatch):
    monkeypatch.setattr(manager, "open_timeout", 0.5)
    response = admin_client.get(f"/hosts/{hung_host.pk}/")
    assert response.status_code == 200
    assert f"Host {hung_host.name} did not answer within 0.5 s." in response.content.decode()
    hung_host.refresh_from_db()
    assert hung_host.status == Host.OFFLINE


def test_the_page_of_a_host_a_watcher_holds_offline_renders_at_once(admin_client, hung_host, settings):
    # A watcher holds the host (its lease in Redis) and has marked it offline: the page believes it
    # instead of waiting out a connection timeout of its own.
    from webvirt import kv
    from webvirt.events.leases import lease_key

    Host.objects.filter(pk=hung_host.pk).update(status=Host.OFFLINE, status_reason="no answer in 5 s")
    key = lease_key(settings.REDIS_PREFIX, hung_host.pk)
    kv.client().set(key, "some-watcher", px=10_000)
    try:
        started = time.monotonic()
        response = admin_client.get(f"/hosts/{hung_host.pk}/")
        # Well before the connection timeout the page would otherwise have waited out (5 s).
        assert time.monotonic() - started < manager.open_timeout
    finally:
        kv.client().delete(key)
    assert response.status_code == 200
    assert f"Host {hung_host.name} is offline: no answer in 5 s" in response.content.decode()


def test_adding_a_host_that_answers_registers_it(admin_client, test_conn):
    response = admin_client.post("/hosts/add/", {"name": "lab", "uri": TEST_URI}, follow=True)
    host = Host.objects.get(name="lab")
    assert response.redirect_chain == [(f"/hosts/{host.pk}/", 302)]
    assert messages_of(response) == ["Host lab is registered and answers."]
    assert host.status == Host.ONLINE and host.facts["hypervisor"] == "TEST"
    assert AuditEntry.objects.get(action="host.create").via == "ui"


def test_adding_a_host_through_the_form_opens_one_connection(admin_client, test_conn, make_test_domain,
                                                             monkeypatch):
    dom = make_test_domain()
    opened: list[str] = []
    real_open = manager.open
    monkeypatch.setattr(manager, "open", lambda target, timeout=None: opened.append(target.uri) or
                        real_open(target, timeout))
    assert add(admin_client, name="form-once").status_code == 302
    host = Host.objects.get(name="form-once")
    assert opened == [TEST_URI] and host.status == Host.ONLINE
    assert Domain.objects.filter(host=host, uuid=dom.UUIDString()).exists()


@pytest.mark.parametrize(("uri", "sentence"), [
    ("not a uri", "That is not a libvirt URI."),
    ("foo:///x", "libvirt has no driver for the scheme &#x27;foo&#x27;."),
    ("qemu+tcp://127.0.0.1:1/system", "The host refused the connection. Is libvirtd running and listening there?"),
])
def test_a_host_that_cannot_be_added_says_plainly_why(admin_client, uri, sentence):
    response = add(admin_client, uri=uri)
    assert response.status_code == 200
    assert sentence in response.content.decode()
    assert f'value="{uri}"' in response.content.decode()
    assert not Host.objects.exists()


def test_adding_a_host_that_never_answers_fails_in_time_and_saves_nothing(admin_client, hung_port):
    started = time.monotonic()
    response = add(admin_client, name="frozen", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system")
    assert time.monotonic() - started < 7
    assert "Host frozen did not answer within 5 s." in response.content.decode()
    assert not Host.objects.exists()


def test_a_name_already_registered_is_refused_on_the_form(admin_client, test_host):
    response = add(admin_client, name="testhost")
    assert "A host named &#x27;testhost&#x27; is already registered." in response.content.decode()
    assert Host.objects.filter(name="testhost").count() == 1


def test_the_edit_form_never_shows_the_stored_secrets(admin_client, secret_host):
    response = admin_client.get(f"/hosts/{secret_host.pk}/edit/")
    assert response.status_code == 200
    page = response.content.decode()
    assert SECRET_PASSWORD not in page and "OPENSSH PRIVATE KEY-----\n" not in page and "b3BlbnNzaC1" not in page
    assert secret_host.password_encrypted not in page and secret_host.ssh_key_encrypted not in page
    assert page.count("A value is stored. Leave empty to keep it.") == 2


def test_a_failed_edit_does_not_echo_the_secrets_typed(admin_client, secret_host):
    response = admin_client.post(f"/hosts/{secret_host.pk}/edit/", {
        "name": "keyed", "uri": "qemu+tcp://127.0.0.1:1/system", "password": "new-" + SECRET_PASSWORD,
        "ssh_key": SECRET_KEY.replace("fake", "newer")})
    assert response.status_code == 200
    page = response.content.decode()
    assert "refused the connection" in page
    assert SECRET_PASSWORD not in page and "b3BlbnNzaC1" not in page


def test_no_page_shows_the_secrets(admin_client, secret_host):
    for url in ("/hosts/", f"/hosts/{secret_host.pk}/", f"/hosts/{secret_host.pk}/delete/", "/audit/"):
        page = admin_client.get(url).content.decode()
        assert SECRET_PASSWORD not in page and "b3BlbnNzaC1" not in page, url


def test_an_edit_with_blank_secrets_keeps_them(admin_client, secret_host):
    response = admin_client.post(f"/hosts/{secret_host.pk}/edit/", {"name": "renamed", "uri": TEST_URI,
                                                                     "description": "moved"}, follow=True)
    assert "Host renamed is saved." in messages_of(response)
    secret_host.refresh_from_db()
    assert (secret_host.name, secret_host.description) == ("renamed", "moved")
    assert secret_host.target().password == SECRET_PASSWORD and secret_host.target().ssh_key == SECRET_KEY


def test_an_edit_can_remove_the_stored_secrets(admin_client, secret_host):
    admin_client.post(f"/hosts/{secret_host.pk}/edit/", {"name": "keyed", "uri": TEST_URI, "clear_credentials": "on"})
    secret_host.refresh_from_db()
    assert not secret_host.has_password and not secret_host.has_ssh_key


def test_a_failed_edit_changes_nothing(admin_client, test_host):
    response = admin_client.post(f"/hosts/{test_host.pk}/edit/", {"name": "testhost", "uri": "foo:///x"})
    assert response.status_code == 200
    test_host.refresh_from_db()
    assert test_host.uri == TEST_URI
    assert AuditEntry.objects.get(action="host.update").outcome == AuditEntry.FAILED


def test_the_delete_page_asks_first(admin_client, domain_row, test_host):
    domain_row()
    response = admin_client.get(f"/hosts/{test_host.pk}/delete/")
    assert response.status_code == 200
    assert "Nothing on the host itself is stopped or deleted" in response.content.decode()
    assert Host.objects.filter(pk=test_host.pk).exists()


def test_confirming_removes_the_host_and_its_cached_domains(admin_client, domain_row, test_host, test_conn):
    row = domain_row()
    response = admin_client.post(f"/hosts/{test_host.pk}/delete/", follow=True)
    assert response.redirect_chain == [("/hosts/", 302)]
    assert messages_of(response) == ["Host testhost is removed from webvirt. Nothing on it was changed."]
    assert not Domain.objects.filter(pk=row.pk).exists()
    assert test_conn.lookupByUUIDString(row.uuid).name() == row.name


def test_a_missing_host_page_answers_404(admin_client, db):
    for url in ("/hosts/999999/", "/hosts/999999/edit/", "/hosts/999999/delete/"):
        assert admin_client.get(url).status_code == 404
    assert admin_client.get("/hosts/abc/").status_code == 404


def test_the_stranger_sees_no_hosts_and_gets_404s(client, stranger, test_host):
    client.force_login(stranger)
    response = client.get("/hosts/")
    assert response.status_code == 200 and "testhost" not in response.content.decode()
    for url in (f"/hosts/{test_host.pk}/", f"/hosts/{test_host.pk}/edit/", f"/hosts/{test_host.pk}/delete/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/hosts/{test_host.pk}/delete/").status_code == 404
    assert Host.objects.filter(pk=test_host.pk).exists()


def test_the_stranger_gets_no_add_form_and_cannot_add_a_host(client, stranger, test_conn):
    client.force_login(stranger)
    assert client.get("/hosts/add/").status_code == 404
    assert add(client, name="mine").status_code == 404
    assert not Host.objects.exists()
