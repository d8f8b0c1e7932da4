from __future__ import annotations

from typing import Any

from django import forms

from webvirt.domains.forms import XML_ATTRS
from webvirt.virt.netxml import MODE_LABELS, MODES, NetworkSpec

MAC_RE = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"


class NetworkForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, widget=forms.TextInput(attrs={"autofocus": True}))
    mode = forms.ChoiceField(choices=[(m, MODE_LABELS[m]) for m in MODES], initial="nat",
                             help_text="NAT: guests reach out through the host. Routed: no NAT. Isolated: guests and "
                                       "host only. Host bridge: guests join an existing bridge on the host's LAN.")
    ipv4 = forms.CharField(label="IPv4 address", required=False,
                           widget=forms.TextInput(attrs={"placeholder": "10.20.30.1/24"}),
                           help_text="The host's address on the network, with its prefix.")
    dhcp_start = forms.CharField(label="DHCP from", required=False,
                                 widget=forms.TextInput(attrs={"placeholder": "10.20.30.100"}))
    dhcp_end = forms.CharField(label="DHCP to", required=False,
                               widget=forms.TextInput(attrs={"placeholder": "10.20.30.200"}))
    hosts = forms.CharField(label="Static DHCP hosts", required=False,
                            widget=forms.Textarea(attrs={"rows": 3, "class": "code",
                                                         "placeholder": "52:54:00:12:34:56 10.20.30.10 web1"}),
                            help_text="One per line: MAC address, IP address and (optionally) a host name.")
    ipv6 = forms.CharField(label="IPv6 address", required=False,
                           widget=forms.TextInput(attrs={"placeholder": "fd00:20:30::1/64"}))
    bridge = forms.CharField(label="Host bridge", required=False,
                             help_text="Only for 'host bridge': an existing bridge on the host, e.g. br0.")
    xml = forms.CharField(label="…or the network's XML", required=False, strip=False,
                          widget=forms.Textarea(attrs={**XML_ATTRS, "rows": 8, "placeholder": "<network>…"}),
                          help_text="When given, the fields above are ignored.")
    start = forms.BooleanField(label="Start it now", required=False, initial=True)
    autostart = forms.BooleanField(label="Start it when the host boots", required=False)

    def clean_hosts(self) -> list[dict]:
        entries = []
        for number, line in enumerate(self.cleaned_data["hosts"].splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not forms.RegexField(MAC_RE).clean(parts[0]):
                raise forms.ValidationError(f"Line {number}: write a MAC address, an IP address and a name.")
            entries.append({"mac": parts[0], "ip": parts[1], "name": parts[2] if len(parts) > 2 else ""})
        return entries

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not (data.get("xml") or "").strip() and not (data.get("name") or "").strip():
            raise forms.ValidationError("Give the network a name (or paste its XML).")
        return data

    def spec(self) -> NetworkSpec | None:
        d = self.cleaned_data
        if (d.get("xml") or "").strip():
            return None
        return NetworkSpec(name=d["name"], mode=d["mode"], ipv4=d["ipv4"], dhcp_start=d["dhcp_start"],
                           dhcp_end=d["dhcp_end"], ipv6=d["ipv6"], bridge=d["bridge"], hosts=d["hosts"])


class DHCPHostForm(forms.Form):
    mac = forms.RegexField(MAC_RE, label="MAC address", error_messages={"invalid": "Like 52:54:00:12:34:56."},
                           widget=forms.TextInput(attrs={"placeholder": "52:54:00:12:34:56"}))
    ip = forms.GenericIPAddressField(label="IP address", protocol="IPv4")
    name = forms.CharField(label="Host name", required=False, max_length=63)


class BridgeForm(forms.Form):
    name = forms.CharField(max_length=15, widget=forms.TextInput(attrs={"placeholder": "br1"}))
    members = forms.CharField(label="Ports", required=False, help_text="Interfaces to enslave, separated by commas.")
    stp = forms.BooleanField(label="Spanning tree (STP)", required=False)
    start = forms.BooleanField(label="Bring it up now", required=False)

    def member_list(self) -> list[str]:
        return [m.strip() for m in self.cleaned_data["members"].split(",") if m.strip()]
