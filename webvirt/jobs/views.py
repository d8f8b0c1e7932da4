from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.jobs import services
from webvirt.jobs.api import JobFilter
from webvirt.jobs.models import Job
from webvirt.ui import fallback, render_live, visible_or_404


def job_list(request: HttpRequest) -> HttpResponse:
    filters = JobFilter(request.GET or None, queryset=policy.visible(request.user, Job.objects.select_related("user")))
    page = Paginator(filters.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_live(request, "jobs/list.html", "jobs/_table.html",
                       {"filters": filters, "page": page, "query": query.urlencode()})


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = visible_or_404(request, Job.objects.select_related("user", "host"), pk)
    return render_live(request, "jobs/detail.html", "jobs/_detail.html", {"job": job})


def _job_page(request: HttpRequest, pk: int) -> str:
    """Where a job that could not be cancelled or retried sends the user back to (webvirt.ui.fallback)."""
    return reverse("jobs:detail", args=[pk])


@fallback(_job_page)
@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = visible_or_404(request, Job.objects.all(), pk)
    services.cancel_job(Actor.from_request(request), job)
    messages.success(request, f"Job #{job.pk} is being cancelled.")
    return redirect(job)


@fallback(_job_page)
@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    job = visible_or_404(request, Job.objects.all(), pk)
    new = services.retry_job(Actor.from_request(request), job)
    messages.success(request, f"Started job #{new.pk} to try again.")
    return redirect(new)
