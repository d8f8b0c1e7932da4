"""A warm pool of 2 on libvirtd with QEMU: filled by a real Celery worker with booted tiny guests, a
user's request answered over HTTP by the live web server with a running, booted machine in under a
second, and the pool refilled to 2.

WEBVIRT_WARM_ROUNDS (default 1) repeats "hand out 2, wait for the refill" for more timings.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.guest.guest import READY_MARKER
from tests.guest.serial import SerialShell
from webvirt.accounts.tokens import create_token
from webvirt.catalog.models import Template, WarmMachine
from webvirt.domains.models import Domain

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

FILL_TIMEOUT = 240.0


def wait_for_warm(api, template_id: int, count: int, timeout: float = FILL_TIMEOUT) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the pool has `count` warm machines."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pool = api.get(f"/api/v1/templates/{template_id}/warm/").json()
        if pool["warm"] >= count:
            return time.monotonic() - started
        time.sleep(0.25)
    jobs = api.get("/api/v1/jobs/").json()["results"]
    raise AssertionError(f"the pool did not reach {count} warm in {timeout:g} s: {pool}; jobs: "
                         f"{[(j['kind'], j['state'], j['error']) for j in jobs[:5]]}")


def ask(url: str, token: str, body: dict) -> tuple[int, dict, float]:
    """POST over HTTP to the live server; the status, the answer and the seconds it took."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Token {token}", "Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started


def test_a_warm_pool_hands_out_booted_machines_at_once_and_refills(  # type: ignore[no-untyped-def]
        api, qemu_conn, tiny_template, scratch_pool, live_stack, worker, clone_prefix):
    bob = get_user_model().objects.create_user("bob", "", "bob-password-1")
    Template.objects.get(pk=tiny_template["id"]).users.add(bob)
    token = create_token(bob)[1]
    url = f"{live_stack.url}/api/v1/templates/{tiny_template['id']}/clone/"

    # The pool of 2 fills: each machine made, started and seen booted (its ready line) by the worker.
    response = api.post(f"/api/v1/templates/{tiny_template['id']}/warm/",
                        {"count": 2, "boot_marker": READY_MARKER}, format="json")
    assert response.status_code == 200, response.json()
    fill = wait_for_warm(api, tiny_template["id"], 2)
    warm_names = set(WarmMachine.objects.values_list("domain__name", flat=True))
    assert all(name.startswith(clone_prefix) for name in warm_names)
    assert {Domain.objects.get(name=n).owner_id for n in warm_names} == {None}

    timings, refills, rounds = [], [fill], int(os.environ.get("WEBVIRT_WARM_ROUNDS", "1"))
    for round_ in range(rounds):
        for i in range(2):
            title = f"{clone_prefix}exam-{round_}{i}-1"
            status, body, seconds = ask(url, token, {
                "count": 1, "name_pattern": f"{clone_prefix}exam-{round_}{i}-{{n}}", "mode": "linked", "start": True,
                "expires_at": (timezone.now() + timedelta(days=1)).isoformat()})
            assert status == 201 and body["warm"] is True, (status, body, worker.output())
            timings.append(seconds)
            domain = Domain.objects.get(pk=body["domain"]["id"])
            assert domain.owner == bob and domain.expires_at is not None and body["title"] == title
            dom = qemu_conn.lookupByUUIDString(domain.uuid)
            assert dom.isActive() and f"<title>{title}</title>" in dom.XMLDesc(0)
            with SerialShell(dom) as shell:  # booted: its shell answers on the serial port
                assert shell.run("echo warm-$((40+2))").strip() == "warm-42"
        refills.append(wait_for_warm(api, tiny_template["id"], 2))  # the hand-outs started a refill

    print(f"warm pool: filled 2 in {fill:.1f} s; hand-outs {[round(t, 3) for t in timings]} s "
          f"(median {statistics.median(timings):.3f}, max {max(timings):.3f}); refills to 2 "
          f"{[round(r, 1) for r in refills[1:]]} s")
    assert max(timings) < 1.0, timings
    assert WarmMachine.objects.filter(status=WarmMachine.HANDED_OUT, handed_to=bob).count() == 2 * rounds
    assert WarmMachine.objects.filter(status=WarmMachine.WARM).count() == 2

    # Stop refilling before the worker goes: the pool of 0 removes the warm machines left.
    api.post(f"/api/v1/templates/{tiny_template['id']}/warm/", {"count": 0}, format="json")
    assert not WarmMachine.objects.filter(status=WarmMachine.WARM).exists()
