"""People → LDAP: the sign-in settings page and its Test connection button (administrators only)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.directory import probe, services
from webvirt.directory.forms import LdapSettingsForm, ProbeForm
from webvirt.directory.models import LdapSettings
from webvirt.ui import shown_here


def _page(request: HttpRequest, row: LdapSettings, form: LdapSettingsForm, probe_form: ProbeForm,
          report: probe.Report | None = None) -> HttpResponse:
    # A password typed for the test is not sent back to the page (nor kept): saving needs it typed again.
    typed = report is not None and bool(form.cleaned_data.get("bind_password"))
    context = {"row": row, "form": form, "probe_form": probe_form, "report": report, "typed_password": typed}
    return render(request, "directory/settings.html", context, status=400 if form.errors else 200)


def ldap_settings(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    row = LdapSettings.load()
    form = LdapSettingsForm(request.POST if request.method == "POST" else None, row=row)
    if form.is_valid():
        with shown_here(request, form):
            row = services.save_settings(Actor.from_request(request), form.to_data())
            messages.success(request, "Saved the LDAP settings. " + (
                "People can sign in with their directory account." if row.enabled else "LDAP sign-in is off."))
            return redirect("directory:settings")
    return _page(request, row, form, ProbeForm())


@require_POST
def ldap_test(request: HttpRequest) -> HttpResponse:
    """Test the settings as typed, without saving them; the page comes back with the answer and the form."""
    policy.require_admin(request.user)
    row = LdapSettings.load()
    form = LdapSettingsForm(request.POST, row=row)
    probe_form = ProbeForm(request.POST)
    report = None
    if form.is_valid() and probe_form.is_valid():
        with shown_here(request, form):
            report = probe.check(Actor.from_request(request), form.to_data(), probe_form.cleaned_data["test_user"])
    return _page(request, row, form, probe_form, report)
