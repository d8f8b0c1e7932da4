"""The OpenID Connect settings page (/people/oidc/): administrators only, the discovery document fetched
from the real test provider when saved, the client secret encrypted and never sent back, and the login
page's button."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests import forms, people
from tests.live import free_port
from tests.oidc.conftest import MAPPING, Provider
from tests.oidc.provider.people import CLIENT
from webvirt import crypto
from webvirt.accounts.models import AuditEntry
from webvirt.oidc.models import OidcSettings

pytestmark = pytest.mark.django_db
PAGE = "/people/oidc/"
SECRET = "s3cret-Client-Value-never-shown"


def form(provider: Provider, **changes: str) -> dict[str, str]:
    values = {"enabled": "on", "button_label": "Sign in with Keycloak", "discovery_url": provider.discovery_url,
              "client_id": CLIENT, "client_secret": SECRET, "scopes": "openid email profile",
              "username_claim": "preferred_username", "groups_claim": "groups", "group_mapping": MAPPING,
              "admin_groups": "staff"}
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


@pytest.fixture
def csrf_client(admin) -> Client:  # type: ignore[no-untyped-def]
    """An administrator's browser whose POSTs must carry the CSRF token, as a real one's do."""
    return forms.csrf_client(admin)


def post(client: Client, data: dict[str, str]):  # type: ignore[no-untyped-def]
    """POST the settings form the way a browser does: the token from the page's own form."""
    return client.post(PAGE, {**data, "csrfmiddlewaretoken": forms.token_from(client, PAGE)})


def errors_of(response) -> str:  # type: ignore[no-untyped-def]
    return " ".join(re.findall(r'class="(?:err|msg error)"[^>]*>([^<]+)<', response.content.decode()))


def test_saving_fetches_the_discovery_document_and_encrypts_the_secret(csrf_client: Client,
                                                                       provider: Provider) -> None:
    answer = post(csrf_client, form(provider))
    assert answer.status_code == 302 and answer["Location"] == PAGE, errors_of(answer)
    config = OidcSettings.objects.get()
    assert config.ready and config.issuer == f"{provider.url}/o"
    assert config.token_endpoint == f"{provider.url}/o/token/"
    assert config.jwks_uri == f"{provider.url}/o/.well-known/jwks.json"
    assert config.userinfo_endpoint == f"{provider.url}/o/userinfo/"
    assert SECRET not in config.client_secret_encrypted and crypto.decrypt(config.client_secret_encrypted) == SECRET
    page = csrf_client.get(PAGE)
    html = page.content.decode()
    assert SECRET not in html and config.client_secret_encrypted not in html
    assert "A secret is set — leave empty to keep it." in html
    assert "http://testserver/accounts/login/oidc/callback/" in html  # the redirect URI to register
    entry = AuditEntry.objects.get(action="oidc.update")
    assert entry.outcome == AuditEntry.OK and entry.via == "ui"
    assert SECRET not in entry.detail and "client secret replaced" in entry.detail
    assert "enabled: False -> True" in entry.detail


def test_an_empty_secret_keeps_the_stored_one(csrf_client: Client, provider: Provider) -> None:
    post(csrf_client, form(provider))
    answer = post(csrf_client, form(provider, client_secret="", button_label="Sign in with SSO"))
    assert answer.status_code == 302, errors_of(answer)
    config = OidcSettings.objects.get()
    assert config.secret() == SECRET and config.button_label == "Sign in with SSO"
    assert "client secret" not in AuditEntry.objects.filter(action="oidc.update").latest("pk").detail


def test_a_form_shown_again_never_holds_the_secret(csrf_client: Client, provider: Provider) -> None:
    answer = post(csrf_client, form(provider, scopes="email profile"))
    assert answer.status_code == 400
    assert "Include openid" in errors_of(answer)
    assert SECRET not in answer.content.decode()
    assert not OidcSettings.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(csrf_client: Client, provider: Provider) -> None:
    assert csrf_client.post(PAGE, form(provider)).status_code == 403
    assert not OidcSettings.objects.exists()


@pytest.mark.parametrize(("where", "sentence"), [
    ("unreachable", "Could not connect to 127.0.0.1:"),
    ("/accounts/login/", "is not an OpenID Connect discovery document (it is not JSON)"),
    ("/o/.well-known/jwks.json", "is not an OpenID Connect discovery document: it has no issuer, "
                                 "authorization_endpoint, token_endpoint, jwks_uri"),
    ("/nowhere/.well-known/openid-configuration", "answered 404 Not Found, not a discovery document"),
    ("localhost", "does not match its address"),
    ("ftp://127.0.0.1/x", "is not an http:// or https:// address"),
])
def test_a_discovery_url_that_is_no_discovery_document_is_said_on_the_form(
        csrf_client: Client, provider: Provider, where: str, sentence: str) -> None:
    url = {"unreachable": f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
           "localhost": provider.discovery_url.replace("127.0.0.1", "localhost")}.get(where)
    if url is None:
        url = where if "://" in where else provider.url + where
    answer = post(csrf_client, form(provider, discovery_url=url))
    assert answer.status_code == 400
    assert sentence in errors_of(answer)
    assert not OidcSettings.objects.exists()
    entry = AuditEntry.objects.get(action="oidc.update")
    assert entry.outcome == AuditEntry.FAILED and SECRET not in entry.detail


def test_mapping_mistakes_are_said_with_their_line(csrf_client: Client, provider: Provider) -> None:
    answer = post(csrf_client, form(provider, group_mapping="class-2026 => students\nteachers teachers"))
    assert answer.status_code == 400
    assert "line 2: write it as" in answer.content.decode()
    assert not OidcSettings.objects.exists()


def test_changing_the_provider_asks_for_the_secret_again(csrf_client: Client, provider: Provider) -> None:
    post(csrf_client, form(provider))
    moved = provider.discovery_url.replace("/o/", "/other/")
    answer = post(csrf_client, form(provider, discovery_url=moved, client_secret=""))
    assert answer.status_code == 400
    assert "Enter the client secret again" in errors_of(answer)
    assert OidcSettings.objects.get().discovery_url == provider.discovery_url


def test_turning_it_on_needs_a_client(csrf_client: Client, provider: Provider) -> None:
    answer = post(csrf_client, form(provider, client_id="", client_secret=""))
    assert answer.status_code == 400
    assert "give the discovery URL, the client id and the client secret" in errors_of(answer)


def test_it_can_be_saved_off_and_empty(csrf_client: Client, provider: Provider) -> None:
    answer = post(csrf_client, form(provider, enabled=None, discovery_url="", client_id="", client_secret=""))
    assert answer.status_code == 302, errors_of(answer)
    config = OidcSettings.objects.get()
    assert not config.enabled and not config.issuer and not config.ready


@pytest.mark.parametrize("who", ["stranger", "bob"])
def test_the_page_does_not_exist_for_others(who: str, request: pytest.FixtureRequest, provider: Provider) -> None:
    client = people.client_for(request.getfixturevalue(who))
    assert client.get(PAGE).status_code == 404
    assert client.post(PAGE, form(provider)).status_code == 404
    assert not OidcSettings.objects.exists()


def test_the_login_page_offers_the_button_only_when_on(configure, client: Client) -> None:
    assert "/accounts/login/oidc/" not in client.get("/accounts/login/").content.decode()
    configure(button_label="Sign in with Keycloak")
    html = client.get("/accounts/login/", {"next": "/templates/?q=a b"}).content.decode()
    assert 'href="/accounts/login/oidc/?next=/templates/%3Fq%3Da%20b">Sign in with Keycloak</a>' in html
    configure(enabled=False)
    assert "Sign in with Keycloak" not in client.get("/accounts/login/").content.decode()
