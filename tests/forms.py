"""Posting a page's HTML forms the way a browser does, through Django's test client with CSRF checks on.

`Client(enforce_csrf_checks=True)` refuses any POST without the csrftoken cookie and a matching
csrfmiddlewaretoken field, as the real server does. `submit` therefore first GETs the page the form is
on, finds the form by where it posts, and sends back what the page put in it (its token, its hidden
fields, the values its inputs hold) with the test's own values on top: a form that is missing from its
page, or that could not work as written, fails the test.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import lxml.html
from django.http import HttpResponse
from django.test import Client

# Inputs a browser does not send as values of their own.
NOT_SENT = {"submit", "button", "reset", "image", "file"}


class BrowserLikeClient(Client):
    """A client that enforces CSRF like a browser session: `submit` posts with the token the page set."""

    def submit(self, path: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
        if "csrftoken" not in self.cookies:
            self.get("/domains/")  # any page with a form sets the cookie
        token = self.cookies["csrftoken"].value
        return self.post(path, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


def csrf_client(user: Any) -> BrowserLikeClient:
    """A client logged in as `user` whose POSTs need a CSRF token, like a browser's."""
    client = BrowserLikeClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def find_form(client: Client, page: str, action: str | None = None) -> lxml.html.FormElement:
    """The form on `page` that posts to `action` (the page itself when None), read from a fresh GET."""
    response = client.get(page)
    assert response.status_code == 200, f"GET {page}: {response.status_code}"
    doc = lxml.html.fromstring(response.content.decode())
    target = action or urlsplit(page).path
    forms = [f for f in doc.forms if (f.get("action") or urlsplit(page).path) == target]
    posted = sorted({f.get("action") or page for f in doc.forms})
    assert forms, f"{page} has no form posting to {target}; its forms post to {posted}"
    form = forms[0]
    assert (form.get("method") or "get").lower() == "post", f"the form for {target} is not posted"
    return form


def fields_of(form: lxml.html.FormElement) -> dict[str, Any]:
    """What a browser would send from `form` untouched: its token, hidden fields and filled-in values."""
    values: dict[str, Any] = {}
    for name, value in form.form_values():
        element = form.inputs[name]
        kind = element.get("type", "").lower() if element.tag == "input" else ""
        if kind not in NOT_SENT:
            values[name] = value
    return values


def submit(client: Client, page: str, action: str | None = None, data: dict[str, Any] | None = None, *,
           follow: bool = False, **extra: Any) -> HttpResponse:
    """Fill in the form of `page` that posts to `action` with `data` and post it with the page's token.

    A value of None in `data` leaves that field out (an unticked checkbox)."""
    form = find_form(client, page, action)
    assert form.inputs["csrfmiddlewaretoken"].value, f"the form for {action or page} carries no CSRF token"
    values = {**fields_of(form), **(data or {})}
    values = {name: value for name, value in values.items() if value is not None}
    return client.post(action or page, values, follow=follow, **extra)


def confirmation(client: Client, page: str, action: str) -> str:
    """The question a browser asks before posting the form of `page` to `action` (its data-confirm)."""
    return find_form(client, page, action).get("data-confirm") or ""


def token_from(client: Client, page: str = "/domains/") -> str:
    """A valid CSRF token for `client`, read from any page it may open (for posts to forms it cannot see)."""
    response = client.get(page)
    assert response.status_code == 200, f"GET {page}: {response.status_code}"
    tokens = lxml.html.fromstring(response.content.decode()).xpath("//input[@name='csrfmiddlewaretoken']/@value")
    assert tokens, f"{page} carries no CSRF token"
    return str(tokens[0])


def audit_entry(action: str) -> Any:
    """The newest audit entry for `action`, checked to have come from the pages (via "ui")."""
    from webvirt.accounts.models import AuditEntry

    entry = AuditEntry.objects.filter(action=action).first()
    assert entry is not None, f"no audit entry for {action}"
    assert entry.via == "ui", entry
    return entry
