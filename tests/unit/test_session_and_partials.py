"""Logging out, a refused CSRF token, and the summary partials the domain and host pages refetch for
their live refresh: walked with a client whose POSTs need a CSRF token, like a browser's."""

from __future__ import annotations

import lxml.html
import pytest
from django.conf import settings
from django.test import Client

from tests.forms import csrf_client, submit, token_from
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain

pytestmark = pytest.mark.django_db


def live_url(client: Client, page: str, element: str) -> str:
    """The URL `page` refetches `element` from when an event arrives (its data-live-url)."""
    doc = lxml.html.fromstring(client.get(page).content.decode())
    [url] = doc.xpath(f"//*[@id='{element}']/@data-live-url")
    return str(url)


def test_logging_out_ends_the_session_and_protected_pages_send_to_the_login(admin):
    client = csrf_client(admin)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    response = submit(client, "/domains/", "/accounts/logout/")  # the "Log out" button on every page
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    for page in ("/domains/", "/hosts/", "/storage/host/1/", "/networks/host/1/"):
        after = client.get(page)
        assert after.status_code == 302 and after["Location"] == f"/accounts/login/?next={page}", page
    # The old session cookie, replayed, is no way back in either.
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = session
    assert replay.get("/domains/")["Location"] == "/accounts/login/?next=/domains/"


def test_a_logout_without_its_token_is_refused_and_the_session_goes_on(admin):
    client = csrf_client(admin)
    client.get("/domains/")
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    assert client.get("/domains/").status_code == 200


@pytest.mark.parametrize("token", [None, "not-the-token", "x" * 64])
def test_a_post_with_a_missing_or_wrong_token_is_a_readable_403_and_changes_nothing(admin, domain_row, test_conn,
                                                                                   token):
    row = domain_row()
    client = csrf_client(admin)
    assert token_from(client, f"/domains/{row.pk}/")  # the page was opened: the client holds a csrftoken cookie
    data = {} if token is None else {"csrfmiddlewaretoken": token}
    response = client.post(f"/domains/{row.pk}/start/", data)
    assert response.status_code == 403
    page = response.content.decode()
    assert "CSRF verification failed" in page and "Traceback" not in page and "<html" in page.lower()
    assert not test_conn.lookupByUUIDString(row.uuid).isActive()
    assert Domain.objects.get(pk=row.pk).state == "shutoff"
    assert not AuditEntry.objects.filter(action="domain.start").exists()  # the view never ran


def test_the_domain_summary_the_page_refetches_shows_the_state_and_its_actions(admin, bob, domain_row):
    row = domain_row()
    Domain.objects.filter(pk=row.pk).update(owner=bob)
    owner = csrf_client(bob)
    url = live_url(owner, f"/domains/{row.pk}/", "domain-summary")
    assert url == f"/domains/{row.pk}/summary/"
    part = owner.get(url, HTTP_HX_REQUEST="true")
    assert part.status_code == 200
    html = part.content.decode()
    assert row.name in html and "<html" not in html.lower()  # the part, not a whole page
    assert 'data-action="start"' in html and "Edit XML" not in html  # the owner starts it; XML is for admins

    submit(owner, f"/domains/{row.pk}/", f"/domains/{row.pk}/start/")  # the part's own Start button
    html = owner.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-action="shutdown"' in html and 'data-action="start"' not in html
    assert "running" in html

    assert "Edit XML" in csrf_client(admin).get(url).content.decode()


def test_the_summaries_of_what_another_user_may_not_see_are_not_found(bob, stranger, domain_row, test_host):
    row = domain_row()
    Domain.objects.filter(pk=row.pk).update(owner=bob)
    client = csrf_client(stranger)
    assert client.get(f"/domains/{row.pk}/summary/").status_code == 404
    assert client.get(f"/hosts/{test_host.pk}/summary/").status_code == 404
    assert csrf_client(bob).get(f"/hosts/{test_host.pk}/summary/").status_code == 404  # owners see no hosts


def test_the_host_summary_the_page_refetches_counts_its_domains_by_state(admin, domain_row, test_host):
    domain_row()
    client = csrf_client(admin)
    url = live_url(client, f"/hosts/{test_host.pk}/", "host-summary")
    assert url == f"/hosts/{test_host.pk}/summary/"
    part = client.get(url, HTTP_HX_REQUEST="true")
    assert part.status_code == 200
    doc = lxml.html.fromstring(part.content.decode())
    total = Domain.objects.filter(host=test_host).count()
    assert doc.xpath("string(//strong)") == str(total)
    shutoff = Domain.objects.filter(host=test_host, state="shutoff").count()
    [link] = doc.xpath(f"//ul[@id='host-counts']//a[contains(@href, 'host={test_host.pk}&state=shutoff')]")
    assert link.text_content() == str(shutoff) and shutoff >= 1
    assert "Reachable: yes" in part.content.decode()
