from __future__ import annotations

from django import forms


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Name",
                           help_text="What the token is for, e.g. the script that uses it.")
    expires_days = forms.IntegerField(min_value=1, max_value=3650, required=False, label="Expires after (days)",
                                      help_text="Leave empty for a token that never expires.")


class SshKeyForm(forms.Form):
    """Only the shape here: webvirt.accounts.sshkeys checks the key itself and says what is wrong."""

    name = forms.CharField(max_length=100, required=False, label="Name",
                           help_text="What the key is for, e.g. the laptop it is on. Left empty: the key's comment.")
    public_key = forms.CharField(
        label="Public key", strip=False,
        help_text="The one line of your .pub file: what cat ~/.ssh/id_ed25519.pub prints.",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocapitalize": "off",
                                     "autocomplete": "off", "placeholder": "ssh-ed25519 AAAA… you@laptop"}))

    def forget_key(self) -> None:
        """Show the form again without what was pasted: used when that was a private key, which must not be
        sent back to the browser (into its history and caches)."""
        self.data = {**self.data, "public_key": ""}
