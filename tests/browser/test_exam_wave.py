"""The exam story in a real browser: an administrator schedules a clone wave for a group of three students.

Everything runs for real: uvicorn with the event socket, the watcher, a Celery worker and Celery beat
(its wave tick every few seconds through WEBVIRT_WAVES_INTERVAL), on real QEMU with the tiny guest as
the template. The wave starts about 20 s after it is saved and ends 60 s after its start: at the start
three machines run and boot, each owned by its student, who sees only theirs; at the end all three
are gone with their disks.
"""

from __future__ import annotations

import re
from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests import live, people
from tests.browser.conftest import ADMIN_PASSWORD, _page_on
from tests.guest.serial import SerialShell
from tests.integration.conftest import (  # noqa: F401
    clone_prefix,
    guest_image,
    pool_dir,
    qemu_conn,
    qemu_host,
    scratch_pool,
    tiny_template,
    workdir,
)

pytestmark = [pytest.mark.browser, pytest.mark.qemu]
TICK_SECONDS = 3
START_IN = timedelta(seconds=25)
LENGTH = timedelta(seconds=60)


@pytest.fixture
def beat(live_stack):  # type: ignore[no-untyped-def]
    """Celery beat beside the live stack, its wave tick every TICK_SECONDS."""
    process = live.start_beat(live_stack.log_dir, WEBVIRT_WAVES_INTERVAL=str(TICK_SECONDS))
    yield process
    process.stop()


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))


def local(moment) -> str:  # type: ignore[no-untyped-def]
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_wave_gives_three_students_a_booted_machine_each_from_start_to_end(  # type: ignore[no-untyped-def]
        browser, request, live_stack, worker, beat, stack_page, admin,
        tiny_template, clone_prefix, qemu_conn, scratch_pool):  # noqa: F811
    from webvirt.domains.models import Domain
    from webvirt.waves.models import Wave

    students = [people.make_user(f"stu{i}", group="class-a") for i in (1, 2, 3)]
    page = stack_page
    log_in(page, admin.username, ADMIN_PASSWORD)
    page.get_by_role("link", name="Waves").click()
    expect(page.locator("h1")).to_have_text("Waves")

    # 1. Schedule the wave with the keyboard-friendly form.
    start = timezone.now() + START_IN
    page.get_by_label(re.compile(r"^Name:?$")).fill("Networks exam")
    page.get_by_label("Template").select_option(label=tiny_template["name"])
    page.get_by_label("Group").select_option(label="class-a")
    page.get_by_label("Start").fill(local(start))
    page.get_by_label("End").fill(local(start + LENGTH))
    page.get_by_label("Name pattern").fill(f"{clone_prefix}w{{n:02}}")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator(".msg").first).to_contain_text("Wave Networks exam is scheduled: 3 machine(s)")
    wave = Wave.objects.get(name="Networks exam")
    row = page.locator(f"#wave-{wave.pk}")
    expect(row.locator("[data-wave-state]")).to_have_text("scheduled")

    # 2. At the start: three machines, running and booted, each its student's; the page follows live.
    expect(row.locator("[data-wave-state]")).to_have_text("running", timeout=(START_IN.seconds + 30) * 1000)
    expect(row.locator("[data-wave-running]")).to_have_text("3", timeout=90_000)
    expect(row.locator("[data-wave-booted]")).to_have_text("3", timeout=90_000)
    expect(row.locator("[data-wave-failed]")).to_have_text("0")
    names = [f"{clone_prefix}w0{i}" for i in (1, 2, 3)]
    rows = {d.name: d for d in Domain.objects.filter(name__in=names).select_related("owner")}
    assert {n: rows[n].owner.username for n in names} == {names[0]: "stu1", names[1]: "stu2", names[2]: "stu3"}
    for name in names:
        dom = qemu_conn.lookupByName(name)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        with SerialShell(dom) as shell:  # the guest answers on its serial console: it has booted
            assert shell.run("echo booted-$((40+2))").strip() == "booted-42"

    # 3. Each student sees only their own machine, with its end time.
    for student, mine in zip(students, names, strict=True):
        pages = _page_on(browser, live_stack.url, 15_000, request)
        theirs = next(pages)
        log_in(theirs, student.username, f"{student.username}-password-1")
        listed = theirs.locator("tr[data-domain]")
        expect(listed).to_have_count(1)
        expect(listed.first).to_contain_text(mine)
        expect(listed.first).to_contain_text(f"expires {timezone.localtime(start + LENGTH):%Y-%m-%d %H:%M}")
        expect(theirs.get_by_role("link", name="Waves")).to_have_count(0)
        next(pages, None)  # the context is closed

    # 4. At the end: all three are gone, with their disks (the clone expiry runs every 30 s).
    def gone() -> bool:
        left = {d.name() for d in qemu_conn.listAllDomains(0)} & set(names)
        scratch_pool.refresh(0)
        disks = [v.name() for v in scratch_pool.listAllVolumes(0) if v.name().startswith(f"{clone_prefix}w")]
        return not left and not disks

    remaining = (start + LENGTH - timezone.now()).total_seconds()
    live.wait_for(gone, remaining + 60, "the wave's machines and disks removed at its end", interval=1)
    assert not any(p.name.startswith(f"{clone_prefix}w") for p in pool_dir(scratch_pool).iterdir())
    page.reload()
    expect(page.locator(f"#waves-past #wave-{wave.pk} [data-wave-state]")).to_have_text("ended")
