"""The pages' one error boundary (webvirt.ui): real views on libvirt's test driver, no mocks.

A failure a view lets through becomes a sentence and a way back; an object the user may not see is
a 404; a page that renders around a failure says it on the form or in the page.
"""

from __future__ import annotations

import uuid as uuidlib
from html import escape

import pytest

from tests.conftest import TEST_URI, domain_xml
from webvirt.domains.models import Domain
from webvirt.hosts.connections import manager
from webvirt.hosts.models import Host
from webvirt.virt.errors import VirtError

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def default_network(test_host, test_conn) -> str:  # type: ignore[no-untyped-def]
    return f"{test_host.pk}:{test_conn.networkLookupByName('default').UUIDString()}"


@pytest.fixture
def schemeless_host(db):  # type: ignore[no-untyped-def]
    """A host whose URI no libvirt driver opens: every call to it fails at once."""
    host = Host.objects.create(name="nowhere", uri="foo:///nowhere", status=Host.ONLINE)
    yield host
    manager.drop(host.target().key)


def test_a_failed_action_becomes_a_message_and_a_redirect_to_its_fallback(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/suspend/")
    assert response.status_code == 302 and response["Location"] == f"/domains/{row.pk}/"
    followed = admin_client.get(response["Location"])
    assert messages_of(followed) == [f"{row.name} is shut off, so it cannot suspend. That needs it to be blocked or "
                                     "running."]


def test_a_failed_action_goes_back_to_a_local_next_page(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post(f"/domains/{row.pk}/suspend/", {"next": "/domains/?state=running"})
    assert response["Location"] == "/domains/?state=running"


def test_an_object_the_user_may_not_see_answers_404(client, stranger, default_network):
    client.force_login(stranger)
    assert client.post(f"/networks/{default_network}/stop/").status_code == 404
    assert client.get(f"/networks/{default_network}/xml/").status_code == 404


def test_a_refused_action_on_an_object_the_user_sees_is_said_and_sends_back(client, stranger, domain_row):
    row = domain_row()
    Domain.objects.filter(pk=row.pk).update(owner=stranger)
    client.force_login(stranger)
    response = client.post(f"/domains/{row.pk}/devices/detach-disk/", {"target": "hda"}, follow=True)
    assert response.redirect_chain == [(f"/domains/{row.pk}/#devices", 302)]
    assert messages_of(response) == ["You are not allowed to do that."]


def test_a_vanished_object_sends_the_user_to_its_fallback(admin_client, test_host):
    response = admin_client.get(f"/networks/{test_host.pk}:{uuidlib.uuid4()}/", follow=True)
    assert response.redirect_chain == [(f"/networks/host/{test_host.pk}/", 302)]
    assert len(messages_of(response)) == 1


def test_a_get_whose_way_back_is_itself_gets_a_4xx_page_not_a_loop(admin_client, test_host):
    gone = f"/networks/{test_host.pk}:{uuidlib.uuid4()}/"
    response = admin_client.get(gone, {"next": gone}, HTTP_REFERER=f"http://testserver/networks/host/{test_host.pk}/")
    assert response.status_code == 404 and "Location" not in response
    page = response.content.decode()
    assert "This could not be done" in page and f'href="http://testserver/networks/host/{test_host.pk}/"' in page


def test_a_pool_that_is_gone_sends_the_user_to_the_hosts_pools(admin_client, test_host):
    response = admin_client.get(f"/storage/pools/{test_host.pk}:{uuidlib.uuid4()}/xml/", follow=True)
    assert response.redirect_chain == [(f"/storage/host/{test_host.pk}/", 302)]
    assert len(messages_of(response)) == 1


def test_an_invalid_action_form_is_a_message_not_a_500(admin_client, default_network):
    response = admin_client.post(f"/networks/{default_network}/dhcp-hosts/", {"mac": "nope", "ip": "10.0.0.1"},
                                 follow=True)
    assert response.redirect_chain == [(f"/networks/{default_network}/", 302)]
    assert messages_of(response) == ["mac: Like 52:54:00:12:34:56."]


def test_a_page_reading_a_host_that_is_down_still_renders_with_the_reason(admin_client, schemeless_host):
    response = admin_client.get(f"/networks/host/{schemeless_host.pk}/")
    assert response.status_code == 200
    assert isinstance(response.context["error"], VirtError)
    assert escape(response.context["error"].message) in response.content.decode()


def test_libvirts_refusal_is_said_on_the_form_next_to_what_was_typed(admin_client, domain_row):
    row = domain_row()
    response = admin_client.post("/domains/new/", {"host": row.host_id, "xml": domain_xml(row.name)})
    assert response.status_code == 200
    [sentence] = response.context["form"].non_field_errors()
    assert sentence.startswith(f"A domain named '{row.name}' already exists on this host.")
    assert not messages_of(response)


def test_a_form_page_the_user_may_not_use_is_not_found_and_posting_to_it_changes_nothing(client, stranger, test_conn):
    client.force_login(stranger)
    assert client.get("/hosts/add/").status_code == 404  # no empty form to fill in for nothing
    response = client.post("/hosts/add/", {"name": "mine", "uri": TEST_URI})
    assert response.status_code == 404
    assert not Host.objects.exists()


def test_a_failure_on_a_confirmation_page_is_a_message_on_that_page(admin_client, domain_row):
    row = domain_row(start=True)
    response = admin_client.post(f"/domains/{row.pk}/undefine/")
    assert response.status_code == 200
    assert messages_of(response) == [f"{row.name} is running. Force it off before undefining it."]


def test_an_embedded_image_gets_a_short_text_and_a_status(admin_client, domain_row):
    response = admin_client.get(f"/consoles/{domain_row().pk}/screenshot.png")
    assert response.status_code == 409 and response["Content-Type"].startswith("text/plain")


def test_the_api_keeps_its_own_handler(api, domain_row):
    response = api.post(f"/api/v1/domains/{domain_row().pk}/suspend/")
    assert response.status_code == 409 and response.json()["code"] == "state"
