"""SSH public keys: checked and fingerprinted like ssh-keygen does, kept per user, audited without the key,
managed on the profile page and through /api/v1/me/ssh-keys/ by their owner only.

Every key is made at test time with cryptography; security-key (-sk) keys, which only a hardware key
can make, are put together from their wire format (type, key, application) around a fresh key.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.test import Client
from rest_framework.test import APIClient

from tests import forms
from webvirt.accounts import sshkeys
from webvirt.accounts.models import AuditEntry, SshKey
from webvirt.accounts.policy import Actor
from webvirt.accounts.tokens import create_token
from webvirt.virt import errors
from webvirt.virt.errors import VirtError

pytestmark = pytest.mark.django_db

CURVES = {"ecdsa-sha2-nistp256": ec.SECP256R1, "ecdsa-sha2-nistp384": ec.SECP384R1,
          "ecdsa-sha2-nistp521": ec.SECP521R1}


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _openssh(private: object) -> str:
    return private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _security_key(key_type: str) -> str:
    if key_type == "sk-ssh-ed25519@openssh.com":
        raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        blob = _string(key_type.encode()) + _string(raw) + _string(b"ssh:")
    else:
        point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        blob = _string(key_type.encode()) + _string(b"nistp256") + _string(point) + _string(b"ssh:")
    return f"{key_type} {base64.b64encode(blob).decode()}"


def public_key_line(key_type: str = "ssh-ed25519", comment: str = "", bits: int = 2048) -> str:
    """A fresh public key of `key_type` as its .pub line."""
    if key_type == "ssh-ed25519":
        line = _openssh(ed25519.Ed25519PrivateKey.generate())
    elif key_type == "ssh-rsa":
        line = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=bits))
    elif key_type in CURVES:
        line = _openssh(ec.generate_private_key(CURVES[key_type]()))
    else:
        line = _security_key(key_type)
    return f"{line} {comment}" if comment else line


def ssh_keygen_fingerprint(line: str) -> str:
    """What OpenSSH itself says the key's fingerprint is."""
    out = subprocess.run(["ssh-keygen", "-l", "-f", "/dev/stdin"], input=line + "\n", capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


def refusal(text: str, name: str | None = None) -> VirtError:
    """Why `text` (and, when given, the name `name` for it) is refused."""
    with pytest.raises(VirtError) as caught:
        key = sshkeys.parse(text)
        if name is not None:
            sshkeys._checked_name(name, key)
    return caught.value


def token_client(user: object) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user)[1]}")
    return client


# Checking a key -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", list(sshkeys.KEY_TYPES))
def test_each_accepted_type_is_kept_in_one_line_with_the_fingerprint_ssh_keygen_prints(stranger, key_type):
    line = public_key_line(key_type, comment="me@laptop")
    key = sshkeys.add_key(Actor(user=stranger), stranger, f"  {line}\r\n")
    assert key.public_key == line and key.key_type == key_type and key.name == "me@laptop"
    assert key.fingerprint == ssh_keygen_fingerprint(line)
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", key.fingerprint)


def test_an_rsa_key_of_1024_bits_is_refused_and_2048_is_enough(stranger):
    refused = refusal(public_key_line("ssh-rsa", bits=1024))
    assert refused.kind == errors.INVALID and "1024 bits" in refused.message and "2048 bits or more" in refused.message
    assert sshkeys.parse(public_key_line("ssh-rsa", bits=2048)).key_type == "ssh-rsa"


def test_a_pasted_private_key_is_refused_as_such():
    private = ed25519.Ed25519PrivateKey.generate()
    for encoding in (serialization.PrivateFormat.OpenSSH, serialization.PrivateFormat.PKCS8):
        pem = private.private_bytes(serialization.Encoding.PEM, encoding, serialization.NoEncryption()).decode()
        assert refusal(pem).message == "This is a private key. Paste the public key: the .pub file."


def test_broken_keys_are_refused_with_what_to_do():
    line = public_key_line()
    key_type, encoded = line.split()
    assert "not valid base64" in refusal(f"{key_type} {encoded[:20]}!{encoded[21:]}").message
    assert "cut short or damaged" in refusal(f"{key_type} {encoded[:-8]}").message  # valid base64, truncated
    assert "does not match 'ssh-rsa'" in refusal(f"ssh-rsa {encoded}").message
    assert "missing after 'ssh-ed25519'" in refusal("ssh-ed25519").message
    assert "type is missing" in refusal(encoded).message
    assert refusal("").message.startswith("Paste a public key")


def test_options_several_lines_and_other_formats_are_refused():
    line = public_key_line(comment="a")
    assert "Remove what comes before 'ssh-ed25519'" in refusal(f'from="10.0.0.0/8",no-pty {line}').message
    assert "several lines" in refusal(f"{line}\n{public_key_line()}").message
    assert "DSA keys" in refusal("ssh-dss AAAAB3NzaC1kc3MAAACBAP").message
    assert "'pgp-sign-rsa' is not an SSH public key type" in refusal("pgp-sign-rsa AAAA").message
    assert "RFC 4716" in refusal("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----").message


def test_no_message_quotes_the_key():
    line = public_key_line("ssh-rsa", bits=1024)
    encoded = line.split()[1]
    for text in (line, encoded, f"ssh-rsa {encoded[:-8]}", f"x{encoded}", f"command=x {line}"):
        assert encoded[:16] not in refusal(text).message


def test_the_name_is_the_comment_unless_given_and_is_checked(stranger):
    line = public_key_line(comment="work\tlaptop  key")
    assert sshkeys.add_key(Actor(user=stranger), stranger, line).name == "work laptop key"
    assert sshkeys.add_key(Actor(user=stranger), stranger, public_key_line(comment="c"), " desk ").name == "desk"
    assert "no comment to take one from" in refusal(public_key_line(), " ").message
    assert "at most 100 characters" in refusal(public_key_line(), "x" * 101).message
    assert "at most 100 characters" in refusal(public_key_line(comment="y" * 101), "").message


def test_a_key_is_kept_once_per_user_under_one_name_and_at_most_50(stranger, bob):
    actor = Actor(user=stranger)
    line = public_key_line(comment="laptop")
    sshkeys.add_key(actor, stranger, line)
    with pytest.raises(VirtError) as same:
        sshkeys.add_key(actor, stranger, line.replace("laptop", "other comment"))
    assert same.value.kind == errors.CONFLICT and same.value.message == "You already have this key, named laptop."
    with pytest.raises(VirtError, match="already have a key named laptop"):
        sshkeys.add_key(actor, stranger, public_key_line(), "laptop")
    sshkeys.add_key(Actor(user=bob), bob, line)  # someone else may have the same key
    for n in range(sshkeys.MAX_KEYS - 1):
        SshKey.objects.create(user=stranger, name=f"k{n}", public_key="-", fingerprint=f"SHA256:{n}")
    with pytest.raises(VirtError, match="You have 50 SSH keys"):
        sshkeys.add_key(actor, stranger, public_key_line(), "one too many")
    assert SshKey.objects.filter(user=stranger).count() == 50


def test_adding_and_deleting_are_audited_with_the_fingerprint_never_the_key(stranger):
    line = public_key_line(comment="laptop")
    key = sshkeys.add_key(Actor(user=stranger, via="api"), stranger, line)
    sshkeys.delete_key(Actor(user=stranger), key)
    with pytest.raises(VirtError):
        sshkeys.add_key(Actor(user=stranger), stranger, public_key_line("ssh-rsa", bits=1024), "old")
    entries = {e.action + ":" + e.outcome: e for e in AuditEntry.objects.filter(action__startswith="sshkey.")}
    assert set(entries) == {"sshkey.add:ok", "sshkey.delete:ok", "sshkey.add:failed"}
    added = entries["sshkey.add:ok"]
    assert added.object_repr == f"laptop ({key.fingerprint})" and key.fingerprint in added.detail
    assert added.username == "charlie" and added.via == "api" and added.object_type == "sshkey"
    assert key.fingerprint in entries["sshkey.delete:ok"].object_repr
    assert "1024 bits" in entries["sshkey.add:failed"].detail
    stored = repr(list(AuditEntry.objects.values()))
    assert line.split()[1][:16] not in stored


def test_keys_of_gives_a_users_lines_by_name_for_a_user_or_an_id(stranger, bob):
    lines = {name: public_key_line(comment=name) for name in ("zeta", "alpha", "mid")}
    for line in lines.values():
        sshkeys.add_key(Actor(user=stranger), stranger, line)
    sshkeys.add_key(Actor(user=bob), bob, public_key_line(comment="bob's"))
    assert sshkeys.keys_of(stranger) == [lines["alpha"], lines["mid"], lines["zeta"]]
    assert sshkeys.keys_of(stranger.pk) == sshkeys.keys_of(stranger)
    assert SshKey.objects.filter(user=stranger).count() == 3
    stranger.delete()
    assert not SshKey.objects.filter(name__in=lines).exists()  # gone with their user


# The API ------------------------------------------------------------------------------------------

def test_the_api_adds_lists_shows_and_deletes_ones_own_keys_with_a_token(stranger):
    api = token_client(stranger)
    line = public_key_line("ecdsa-sha2-nistp384", comment="ci@builder")
    added = api.post("/api/v1/me/ssh-keys/", {"public_key": line}, format="json")
    assert added.status_code == 201
    body = added.json()
    assert set(body) == {"id", "name", "public_key", "fingerprint", "type", "created"}
    assert body["name"] == "ci@builder" and body["type"] == "ecdsa-sha2-nistp384" and body["public_key"] == line
    assert body["fingerprint"] == ssh_keygen_fingerprint(line)

    listed = api.get("/api/v1/me/ssh-keys/").json()
    assert [k["id"] for k in listed["results"]] == [body["id"]]
    assert api.get(f"/api/v1/me/ssh-keys/{body['id']}/").json() == body
    assert api.delete(f"/api/v1/me/ssh-keys/{body['id']}/").status_code == 204
    assert not SshKey.objects.exists()


def test_the_api_answers_refusals_as_sentences(stranger):
    api = token_client(stranger)
    short = api.post("/api/v1/me/ssh-keys/", {"public_key": public_key_line("ssh-rsa", bits=1024), "name": "old"},
                     format="json")
    assert short.status_code == 400 and short.json()["code"] == "invalid" and "1024 bits" in short.json()["error"]
    line = public_key_line()
    assert api.post("/api/v1/me/ssh-keys/", {"public_key": line, "name": "a"}, format="json").status_code == 201
    again = api.post("/api/v1/me/ssh-keys/", {"public_key": line, "name": "b"}, format="json")
    assert again.status_code == 409 and again.json() == {"error": "You already have this key, named a.",
                                                         "code": "conflict"}
    missing = api.post("/api/v1/me/ssh-keys/", {"name": "c"}, format="json")
    assert missing.status_code == 400 and missing.json()["error"].startswith("public_key:")


def test_someone_elses_key_answers_404_in_the_api_administrators_too(stranger, admin, api):
    theirs = sshkeys.add_key(Actor(user=stranger), stranger, public_key_line(comment="charlie's"))
    for client in (api, token_client(admin)):
        assert client.get(f"/api/v1/me/ssh-keys/{theirs.pk}/").status_code == 404
        assert client.delete(f"/api/v1/me/ssh-keys/{theirs.pk}/").status_code == 404
        assert client.get("/api/v1/me/ssh-keys/").json()["count"] == 0
    assert SshKey.objects.filter(pk=theirs.pk).exists()
    assert APIClient().get("/api/v1/me/ssh-keys/").status_code == 401


def test_the_schema_describes_the_ssh_key_routes(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/me/ssh-keys/"]) == {"get", "post"}
    assert set(paths["/api/v1/me/ssh-keys/{id}/"]) == {"get", "delete"}
    created = paths["/api/v1/me/ssh-keys/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/SshKey"}
    fields = schema["components"]["schemas"]["SshKey"]
    assert set(fields["properties"]) == {"id", "name", "public_key", "fingerprint", "type", "created"}
    assert set(fields["required"]) == {"id", "public_key", "fingerprint", "type", "created"}
    assert all(fields["properties"][f].get("readOnly") for f in ("id", "fingerprint", "type", "created"))


# The profile page ---------------------------------------------------------------------------------

def csrf_client(user: object) -> tuple[Client, str]:
    """A client that checks CSRF like a browser, signed in, with the token the profile page gives it."""
    client = forms.csrf_client(user)
    return client, forms.token_from(client, "/accounts/profile/")


def test_the_profile_page_says_who_you_are_and_links_to_the_tokens(client, dave):
    client.force_login(dave)
    page = client.get("/accounts/profile/")
    html = page.content.decode()
    assert page.status_code == 200 and "<h1>Your profile</h1>" in html
    assert "<dd>dave</dd>" in html and '<span class="tag group">teachers</span>' in html
    assert 'href="/accounts/tokens/"' in html and 'href="/accounts/profile/" aria-current="page"' in html
    assert "You have no SSH keys yet" in html


def test_the_page_adds_a_key_and_deletes_it_after_confirming_with_csrf_tokens(stranger):
    client, csrf = csrf_client(stranger)
    line = public_key_line("ssh-ed25519", comment="laptop")
    assert client.post("/accounts/profile/", {"public_key": line}).status_code == 403  # no CSRF token
    added = client.post("/accounts/profile/", {"csrfmiddlewaretoken": csrf, "name": "", "public_key": line},
                        follow=True)
    key = SshKey.objects.get(user=stranger)
    html = added.content.decode()
    assert "Added the SSH key laptop" in html and key.fingerprint in html
    assert 'data-confirm="Delete the SSH key laptop?' in html
    assert AuditEntry.objects.get(action="sshkey.add").via == "ui"

    assert client.get(f"/accounts/profile/ssh-keys/{key.pk}/delete/").status_code == 405  # deleting takes a POST
    assert client.post(f"/accounts/profile/ssh-keys/{key.pk}/delete/").status_code == 403
    deleted = client.post(f"/accounts/profile/ssh-keys/{key.pk}/delete/", {"csrfmiddlewaretoken": csrf}, follow=True)
    assert "Deleted the SSH key laptop" in deleted.content.decode() and not SshKey.objects.exists()


def test_the_page_shows_a_refusal_on_the_form_and_never_sends_a_private_key_back(stranger):
    client, csrf = csrf_client(stranger)
    short = public_key_line("ssh-rsa", bits=1024)
    refused = client.post("/accounts/profile/", {"csrfmiddlewaretoken": csrf, "name": "old", "public_key": short})
    assert refused.status_code == 400 and "1024 bits" in refused.content.decode()
    assert short.split()[1] in refused.content.decode()  # kept in the textarea, to fix

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    private = client.post("/accounts/profile/", {"csrfmiddlewaretoken": csrf, "public_key": pem})
    html = private.content.decode()
    assert private.status_code == 400 and "This is a private key. Paste the public key: the .pub file." in html
    assert pem.splitlines()[1] not in html and not SshKey.objects.exists()


def test_someone_elses_key_answers_404_on_the_page(stranger, admin):
    theirs = sshkeys.add_key(Actor(user=admin), admin, public_key_line(comment="alice's laptop"))
    client, csrf = csrf_client(stranger)
    assert "alice&#x27;s laptop" not in client.get("/accounts/profile/").content.decode()
    gone = client.post(f"/accounts/profile/ssh-keys/{theirs.pk}/delete/", {"csrfmiddlewaretoken": csrf})
    assert gone.status_code == 404 and SshKey.objects.filter(pk=theirs.pk).exists()


def test_the_profile_page_needs_a_login(client):
    response = client.get("/accounts/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
