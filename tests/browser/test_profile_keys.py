"""The profile page in a real browser: a user adds an SSH key with the keyboard, sees it listed with the
fingerprint ssh-keygen prints, is told why a bad key is refused, and deletes the key after confirming."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.unit.test_ssh_keys import public_key_line, ssh_keygen_fingerprint
from webvirt.accounts.models import SshKey

pytestmark = pytest.mark.browser


def test_a_user_adds_an_ssh_key_and_deletes_it_after_confirming(page, log_in, shot, admin):  # type: ignore[no-untyped-def]
    line = public_key_line("ssh-ed25519", comment="alice@laptop")
    log_in()
    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.locator("td.empty")).to_contain_text("You have no SSH keys yet")

    # A short RSA key first: the reason is on the form, and nothing is added.
    page.get_by_label("Public key").fill(public_key_line("ssh-rsa", bits=1024))
    page.get_by_role("button", name="Add key").click()
    expect(page.locator(".msg.error")).to_contain_text("This RSA key has 1024 bits")
    shot("profile-ssh-key-refused")

    # The keyboard alone: the name, the key, Tab to the button, Enter.
    page.get_by_label("Name").fill("")
    page.get_by_label("Public key").fill(line)
    page.get_by_label("Public key").press("Tab")
    expect(page.get_by_role("button", name="Add key")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".msg.success")).to_contain_text("Added the SSH key alice@laptop")
    row = page.locator("#ssh-keys tbody tr", has_text="alice@laptop")
    expect(row).to_contain_text(ssh_keygen_fingerprint(line))
    expect(row).to_contain_text("ssh-ed25519")
    shot("profile-ssh-keys")

    # Deleting asks first: dismissed, the key stays; accepted, it is gone.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.get_by_role("button", name="Delete the SSH key alice@laptop").click()
    assert asked and asked[0].startswith("Delete the SSH key alice@laptop?")
    expect(row).to_be_visible()
    assert SshKey.objects.filter(user=admin).count() == 1

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete the SSH key alice@laptop").click()
    expect(page.locator(".msg.success")).to_contain_text("Deleted the SSH key alice@laptop")
    expect(page.locator("td.empty")).to_contain_text("You have no SSH keys yet")
    assert not SshKey.objects.filter(user=admin).exists()
