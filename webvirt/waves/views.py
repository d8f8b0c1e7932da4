"""The Waves page: upcoming, running and past waves, the form that schedules one, cancel and end now.

Views only wire forms and templates to `webvirt.waves.services`; failures go to the error boundary."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.ui import shown_here
from webvirt.waves import services
from webvirt.waves.forms import WaveForm
from webvirt.waves.models import Wave


def wave_list(request: HttpRequest) -> HttpResponse:
    policy.require_admin(request.user)  # hidden from others: the error boundary answers 404
    form = WaveForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request, form):  # quotas, names, memory, space: said on the form, with the numbers
            wave = services.create_wave(Actor.from_request(request), form.to_data())
            messages.success(request, f"Wave {wave.name} is scheduled: {wave.planned} machine(s) at "
                                      f"{timezone.localtime(wave.start_at):%Y-%m-%d %H:%M}.")
            return redirect("waves:list")
    waves = Wave.objects.select_related("template", "group").prefetch_related("users").order_by("start_at")
    return render(request, "waves/list.html", {
        "form": form,
        "upcoming": [w for w in waves if w.state == Wave.SCHEDULED],
        "running": [w for w in waves if w.state == Wave.RUNNING],
        "past": sorted((w for w in waves if not w.is_open), key=lambda w: w.start_at, reverse=True)[:100]})


def _wave(request: HttpRequest, pk: int) -> Wave:
    policy.require_admin(request.user)
    return get_object_or_404(Wave.objects.select_related("template"), pk=pk)


def wave_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then cancel a scheduled wave."""
    wave = _wave(request, pk)
    if request.method == "POST":
        with shown_here(request):
            services.delete_wave(Actor.from_request(request), wave)
            messages.success(request, f"Wave {wave.name} is cancelled: no machines will be made.")
        return redirect("waves:list")
    return render(request, "waves/confirm.html", {
        "wave": wave, "verb": "Cancel", "title": f"Cancel the wave {wave.name}?",
        "text": f"Its {wave.planned} machine(s) will not be made."})


def wave_end(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then end a running wave: its machines are removed with their disks now."""
    wave = _wave(request, pk)
    if request.method == "POST":
        with shown_here(request):
            services.end_now(Actor.from_request(request), wave)
            messages.success(request, f"Wave {wave.name} has ended: its machines are being removed.")
        return redirect("waves:list")
    return render(request, "waves/confirm.html", {
        "wave": wave, "verb": "End now", "title": f"End the wave {wave.name} now?",
        "text": f"Its {wave.made} machine(s) are forced off and removed with their disks, now. Whatever the "
                "people wrote on them is lost."})
