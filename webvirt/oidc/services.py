"""OpenID Connect settings: saving them (administrators only, audited) and reading the provider's
discovery document, whose endpoints are stored with them.

The client secret is write-only: an empty one keeps the stored secret, and like a host's credentials
it is only ever sent to the provider it was given for, so changing the discovery URL asks for it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

import requests
from django.utils import timezone

from webvirt.accounts import groupsync, policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.oidc.models import OidcSettings
from webvirt.virt import errors
from webvirt.virt.errors import VirtError, quote

WELL_KNOWN = "/.well-known/openid-configuration"
TIMEOUT = 5.0  # seconds, for the discovery document and for each request of a sign-in
MAX_DOCUMENT = 1024**2  # a discovery document is a few kilobytes; anything past this is not one
SIGNING_ALGORITHM = "RS256"  # what webvirt verifies ID tokens with: the provider's RSA keys (its JWKS)
ENDPOINTS = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class Discovery:
    """What webvirt keeps of a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


@dataclass
class SettingsData:
    """What an administrator sets. An empty client secret keeps the stored one."""

    enabled: bool
    button_label: str
    discovery_url: str
    client_id: str
    client_secret: str
    scopes: str
    username_claim: str
    groups_claim: str
    group_mapping: str
    admin_groups: str


def _is_web_address(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _get_document(url: str) -> requests.Response:
    """GET the discovery document; VirtError saying in plain words what failed."""
    host = urlsplit(url).netloc
    try:
        response = requests.get(url, timeout=TIMEOUT, headers={"Accept": "application/json"}, stream=True)
    except requests.exceptions.SSLError:
        raise VirtError(f"{host} did not present a TLS certificate this server trusts, so its discovery document "
                        "was not read.", errors.UNREACHABLE) from None
    except requests.Timeout:
        raise VirtError(f"{host} did not answer within {TIMEOUT:.0f} seconds.", errors.TIMEOUT) from None
    except requests.ConnectionError:
        raise VirtError(f"Could not connect to {host}: check the address, and that the provider is running and "
                        "reachable from this server.", errors.UNREACHABLE) from None
    except requests.RequestException as exc:
        raise VirtError(f"Could not fetch {quote(url)}: {exc}", errors.UNREACHABLE) from None
    if response.status_code != 200:
        response.close()
        raise VirtError(f"{quote(url)} answered {response.status_code} {response.reason}, not a discovery document. "
                        f"Give the provider's address ending in {WELL_KNOWN}.", errors.INVALID)
    return response


def _parse(url: str, response: requests.Response) -> dict[str, object]:
    body = response.raw.read(MAX_DOCUMENT + 1, decode_content=True)
    not_one = f"{quote(url)} is not an OpenID Connect discovery document"
    if len(body) > MAX_DOCUMENT:
        raise VirtError(f"{not_one}: it is larger than 1 MiB.", errors.INVALID)
    try:
        document = json.loads(body)
    except ValueError:
        raise VirtError(f"{not_one} (it is not JSON). Give the provider's address ending in {WELL_KNOWN}.",
                        errors.INVALID) from None
    if not isinstance(document, dict):
        raise VirtError(f"{not_one} (it is not a JSON object).", errors.INVALID)
    return document


def fetch_discovery(url: str) -> Discovery:
    """The provider's endpoints, read from its discovery document at `url`; VirtError if it cannot be
    fetched or is not a discovery document webvirt can use."""
    url = url.strip()
    if not _is_web_address(url):
        raise VirtError(f"'{quote(url)}' is not an http:// or https:// address.", errors.INVALID)
    with _get_document(url) as response:
        document = _parse(url, response)
    missing = [key for key in REQUIRED if not isinstance(document.get(key), str) or not document[key]]
    if missing:
        raise VirtError(f"{quote(url)} is not an OpenID Connect discovery document: it has no "
                        f"{', '.join(missing)}.", errors.INVALID)
    found = {key: str(document.get(key) or "") for key in ENDPOINTS}
    bad = [key for key in ENDPOINTS if found[key] and not _is_web_address(found[key])]
    if bad:
        raise VirtError(f"The discovery document's {', '.join(bad)} is not an http:// or https:// address.",
                        errors.INVALID)
    # OpenID Connect Discovery: the document's address is its issuer followed by the well-known path. A
    # document claiming another issuer is not this provider's (and its tokens would name that issuer).
    if url.rstrip("/") != found["issuer"].rstrip("/") + WELL_KNOWN:
        raise VirtError(f"The discovery document names the issuer {quote(found['issuer'])}, which does not match "
                        f"its address: it should be that issuer followed by {WELL_KNOWN}.", errors.INVALID)
    algorithms = document.get("id_token_signing_alg_values_supported")
    if isinstance(algorithms, list) and SIGNING_ALGORITHM not in algorithms:
        raise VirtError(f"The provider signs ID tokens with {', '.join(map(str, algorithms))}, not "
                        f"{SIGNING_ALGORITHM}: set its client (or realm) to sign with {SIGNING_ALGORITHM}.",
                        errors.INVALID)
    return Discovery(**found)


def _require_secret(config: OidcSettings, data: SettingsData) -> None:
    url_changed = config.has_secret and data.discovery_url.strip() != config.discovery_url
    if url_changed and not data.client_secret:
        raise VirtError("Enter the client secret again when you change the discovery URL: the stored one is not "
                        "sent to another provider.", errors.INVALID)
    if data.enabled and not (data.discovery_url.strip() and data.client_id.strip()
                             and (data.client_secret or config.has_secret)):
        raise VirtError("To turn sign-in on, give the discovery URL, the client id and the client secret.",
                        errors.INVALID)


def _apply(config: OidcSettings, data: SettingsData, found: Discovery | None) -> None:
    for field in fields(SettingsData):
        if field.name != "client_secret":
            value = getattr(data, field.name)
            setattr(config, field.name, value.strip() if isinstance(value, str) else value)
    if data.client_secret:
        config.set_secret(data.client_secret)
    for key in ENDPOINTS:
        setattr(config, key, getattr(found, key) if found else "")
    config.discovered = timezone.now() if found else None


def _changes(before: dict[str, object], config: OidcSettings, secret_changed: bool) -> str:
    """What changed, for the audit trail: short values as they are, long texts only named; never the secret."""
    said = []
    for name, old in before.items():
        new = getattr(config, name)
        if old == new:
            continue
        label = name.replace("_", " ")
        if name in ("group_mapping", "admin_groups"):
            said.append(f"{label} changed")
        else:
            said.append(f"{label}: {quote(str(old), 100) or '(empty)'} -> {quote(str(new), 100) or '(empty)'}")
    if secret_changed:
        said.append("client secret replaced")
    return "; ".join(said) or "saved unchanged"


def save_settings(actor: Actor, data: SettingsData) -> OidcSettings:
    """Check and store the settings; the discovery document is fetched now, its endpoints kept."""
    with audited(actor, "oidc.update") as target:
        target.set(kind="oidcsettings", text="OpenID Connect settings")
        policy.require_admin(actor.user)
        groupsync.parse(data.group_mapping, data.admin_groups)  # the form checked it; a mistake is no setting
        config = OidcSettings.load()
        _require_secret(config, data)
        found = fetch_discovery(data.discovery_url) if data.discovery_url.strip() else None
        watched = [f.name for f in fields(SettingsData) if f.name != "client_secret"] + ["issuer"]
        before = {name: getattr(config, name) for name in watched}
        _apply(config, data, found)
        config.save()
        target.set(config)
        target.detail.append(_changes(before, config, bool(data.client_secret)))
    return config
