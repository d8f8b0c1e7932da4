"""The jobs pages and API: who sees which job, cancelling and running again."""

from __future__ import annotations

import pytest

from tests.catalog.conftest import clone, run
from tests.people import api_for, client_for
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def jobs(template, bob, dave):  # type: ignore[no-untyped-def]
    """One queued clone job of bob's and one of dave's."""
    template.users.add(bob, dave)
    mine = Job.objects.get(pk=clone(bob, template, pattern=f"{template.name}-b{{n}}").json()["job"])
    theirs = Job.objects.get(pk=clone(dave, template, pattern=f"{template.name}-d{{n}}").json()["job"])
    return mine, theirs


def test_users_see_their_own_jobs_and_administrators_all(jobs, bob, admin_client, api):
    mine, theirs = jobs
    assert [j["id"] for j in api_for(bob).get("/api/v1/jobs/").json()["results"]] == [mine.pk]
    page = client_for(bob).get("/jobs/").content.decode()
    assert f'data-job="{mine.pk}"' in page and f'data-job="{theirs.pk}"' not in page
    assert {j["id"] for j in api.get("/api/v1/jobs/").json()["results"]} == {mine.pk, theirs.pk}
    page = admin_client.get("/jobs/").content.decode()
    assert f'data-job="{mine.pk}"' in page and f'data-job="{theirs.pk}"' in page


def test_a_job_page_shows_its_progress_and_another_users_job_is_404(jobs, bob):
    mine, theirs = jobs
    html, api = client_for(bob), api_for(bob)
    page = html.get(f"/jobs/{mine.pk}/").content.decode()
    assert f'data-job-bar="{mine.pk}"' in page and "Waiting for a worker." in page and "Cancel" in page
    assert api.get(f"/api/v1/jobs/{mine.pk}/").json()["state"] == "queued"
    assert html.get(f"/jobs/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/jobs/{theirs.pk}/").status_code == 404
    assert html.post(f"/jobs/{theirs.pk}/cancel/").status_code == 404
    assert api.post(f"/api/v1/jobs/{theirs.pk}/cancel/").status_code == 404
    assert api.post(f"/api/v1/jobs/{theirs.pk}/retry/").status_code == 404
    assert Job.objects.get(pk=theirs.pk).state == Job.QUEUED


def test_a_user_cancels_their_job_and_runs_it_again_on_the_job_page(jobs, bob, test_conn):
    mine, _ = jobs
    html = client_for(bob)
    response = html.post(f"/jobs/{mine.pk}/cancel/", follow=True)
    assert f"Job #{mine.pk} is being cancelled." in response.content.decode()
    assert Job.objects.get(pk=mine.pk).state == Job.CANCELLED
    response = html.post(f"/jobs/{mine.pk}/cancel/", follow=True)
    assert f"Job #{mine.pk} has already cancelled; there is nothing to cancel." in response.content.decode()
    response = html.post(f"/jobs/{mine.pk}/retry/")
    again = Job.objects.filter(user=bob).exclude(pk=mine.pk).get()
    assert response["Location"] == f"/jobs/{again.pk}/"
    assert again.params["names"] == mine.params["names"] and again.state == Job.QUEUED


def test_a_finished_job_cannot_be_cancelled_through_the_api(template, bob):
    template.users.add(bob)
    job = run(clone(bob, template))
    response = api_for(bob).post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 409 and "has already succeeded" in response.json()["error"]
