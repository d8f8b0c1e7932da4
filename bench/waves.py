#!/usr/bin/env python3
"""Exam week: a bulk shutdown of 200 domains, a 20-machine clone wave, and a warm pool's hand-outs.

    .venv/bin/python bench/waves.py [--bulk 200] [--count 20] [--warm 4] [--handouts 20] [--phases bulk,wave,warm]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR with SQLite, a Redis key prefix of
its own): starts the web process, a Celery worker (concurrency 2), Celery beat (waves ticking every
second: WEBVIRT_WAVES_INTERVAL=1) and an event watcher as the Procfile does, registers libvirt's test
driver (`test+unix:///default`) and qemu:///system through the API, makes a template of the tiny
test guest (tests/guest) in a temporary directory pool, granted to one ordinary user, then

- **bulk**: defines and starts --bulk test-driver domains with libvirt, waits until the cache shows
  them running, runs one small bulk job first (so the worker's start-up is not counted), then times
  `POST /api/v1/domains/bulk/ {"filter": {"search": ...}, "action": "shutdown"}` until its job has
  succeeded, and checks with libvirt that every one is shut off (goal: under 10 s);
- **wave**: schedules a wave of --count linked machines (one for each of --count ordinary users)
  starting a few seconds ahead, and times from its start time until all are booted: the template
  has the guest's ready line, the wave's clone job reads it on each console, and the wave's own
  `booted` count (polled every 0.25 s) is the figure, a second console reader would steal the line
  from the job (--no-marker: the job's 'running 10 s' check, and the ready lines read from the
  guests' ptys as bench/clone.py does); ends it (`POST .../end/`) and waits until its machines are
  gone; then the same --count made by an immediate `POST /api/v1/templates/<id>/clone/` (linked,
  started, no boot check), timed from the request until each guest's ready line on its pty (goal:
  the wave no slower), and removed;
- **warm**: sets the template's warm pool to --warm machines (ready line: the guest's), waits until
  all are warm, then the ordinary user asks --handouts times for one machine
  (`POST .../clone/` count 1), each when at least one machine is warm: median and p95 of the
  answer times (goal: under 1 s), how many were served warm, and the refill time (from the first
  hand-out until the pool is back to --warm warm machines).

Everything it made (domains, volumes, the pool) is removed at the end, also when a phase fails.

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clone import URI as QEMU_URI
from clone import Watch, open_libvirt, remove_domains
from common import (
    ADMIN_USER,
    PYTHON,
    UVICORN,
    Api,
    BenchError,
    Processes,
    bench_env,
    create_users,
    free_port,
    keep_or_remove,
    log,
    make_template,
    manage,
    median,
    percentile,
    prepare_database,
    private_pool,
    wait_for_web,
)
from events_latency import TEST_URI, test_domain_xml

from tests.guest.guest import READY_MARKER, ensure_image, tiny_domain_xml

GOAL_BULK_SECONDS = 10.0
GOAL_HANDOUT_SECONDS = 1.0
BOOT_TIMEOUT = 300.0
STUDENT = "benchstudent"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def wait_until(check, timeout: float, what: str, procs: Processes) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        procs.check()
        time.sleep(0.1)
    raise BenchError(f"{what} did not happen within {timeout:g} s")


def bulk(api: Api, conn: libvirt.virConnect, procs: Processes, count: int) -> dict:
    tag = f"wvbulk-{uuid.uuid4().hex[:6]}"
    doms = []
    try:
        for n in range(count + 1):
            dom = conn.defineXML(test_domain_xml(f"{tag}-{'warm' if n == count else f'd{n:03}'}", str(uuid.uuid4())))
            dom.create()
            doms.append(dom)

        def running(search: str, want: int) -> bool:
            found = api.obj("GET", f"/api/v1/domains/?search={search}&state=running&page_size=1")
            return found["count"] == want

        wait_until(lambda: running(tag, count + 1), 60, f"{count + 1} running domains in the cache", procs)
        warm = api.obj("POST", "/api/v1/domains/bulk/", {"filter": {"search": f"{tag}-warm"}, "action": "shutdown"},
                       expect=202)
        if api.wait_job(warm["job"])["state"] != "succeeded":
            raise BenchError("the warm-up bulk job failed")
        log(f"{count} running test-driver domains; bulk shutdown through the API")
        started = time.monotonic()
        answer = api.obj("POST", "/api/v1/domains/bulk/", {"filter": {"search": f"{tag}-d"}, "action": "shutdown"},
                         expect=202)
        job = api.wait_job(answer["job"], poll=0.05)
        took = time.monotonic() - started
        still = sum(1 for d in doms[:count] if d.isActive())
        if job["state"] != "succeeded" or answer["count"] != count or still:
            raise BenchError(f"the bulk job {job['state']}: {answer['count']} selected, {still} still running: "
                             f"{job.get('error') or job.get('result')}")
        log(f"bulk shutdown of {count}: {took:.2f} s from the POST to the job's success")
        return {"domains": count, "seconds": round(took, 2), "job_seconds": round(job["duration"], 2),
                "goal_seconds": GOAL_BULK_SECONDS, "goal_met": took < GOAL_BULK_SECONDS}
    finally:
        for dom in doms:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()


# The wave against an immediate clone request ----------------------------------------------------

def watch_booted(names: list[str], t0: float, procs: Processes, poll=None) -> tuple[Watch, float | None]:  # type: ignore[no-untyped-def]
    """Follow `names` until every one has printed its ready line (times from `t0`); `poll` runs meanwhile."""
    watch = Watch(names, t0)
    watch.start()
    deadline = time.monotonic() + BOOT_TIMEOUT
    while not watch.all("booted") and time.monotonic() < deadline:
        procs.check()
        if poll is not None:
            poll()
        time.sleep(0.25)
    return watch, watch.last("booted")


def stop_watch(watch: Watch, what: str) -> int:
    watch.stop.set()
    watch.join(5)
    log(f"{what}: {watch.summary()}")
    missing = [n for n, t in watch.times.items() if "booted" not in t]
    if missing:
        log(f"{what}: {len(missing)} guest(s) printed no ready line within {BOOT_TIMEOUT:g} s: {', '.join(missing)}")
    return len(missing)


def gone(names: list[str]) -> bool:
    conn = open_libvirt()
    try:
        left = {d.name() for d in conn.listAllDomains(0)}.intersection(names)
    finally:
        conn.close()
    return not left


def wave_phase(api: Api, template: int, users: list[str], prefix: str, procs: Processes, marker: bool) -> dict:
    """The wave, timed from its start time. With `marker`, the template has the guest's ready line and the
    wave's clone job checks each machine by it (reading its console): then the wave's own booted count is
    the figure, since a second reader of the console would steal the line from the job. Without, the job
    calls a machine booted once it has run 10 s, and the guests' ready lines are read from their ptys."""
    count = len(users)
    names = [f"{prefix}w{n:02}" for n in range(1, count + 1)]
    api.obj("POST", f"/api/v1/templates/{template}/warm/", {"count": 0, "boot_marker": READY_MARKER if marker else ""})
    start_at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    wave = api.obj("POST", "/api/v1/waves/", {
        "name": f"bench wave {prefix}", "template": template, "users": users, "per_user": 1,
        "start_at": start_at.isoformat(), "end_at": (start_at + timedelta(hours=1)).isoformat(),
        "name_pattern": f"{prefix}w{{n:02}}", "mode": "linked"}, expect=201)
    t0 = time.monotonic() + (start_at - datetime.now(UTC)).total_seconds()
    log(f"wave: {count} machines for {count} users, starting at {start_at:%H:%M:%S}, checked booted by "
        + ("the ready line" if marker else "running 10 s"))
    counted: dict[str, float] = {}
    last: dict = {}

    def poll() -> None:
        last.update(api.obj("GET", f"/api/v1/waves/{wave['id']}/"))
        for key in ("made", "running", "booted"):
            if last[key] >= count:
                counted.setdefault(key, round(time.monotonic() - t0, 2))
        if last["state"] in ("failed", "ended", "cancelled"):
            raise BenchError(f"the wave is {last['state']}: {last['message']}")

    booted: float | None = None
    if not marker:
        watch, booted = watch_booted(names, t0, procs, poll)
        stop_watch(watch, "wave")
    deadline = time.monotonic() + BOOT_TIMEOUT
    while "booted" not in counted and time.monotonic() < deadline:
        poll()
        if last["booted"] + last["failed"] >= count:
            break
        procs.check()
        time.sleep(0.25)
    if marker:
        booted = counted.get("booted")
    log(f"wave: started at {last.get('started')}; all running after {counted.get('running')} s, "
        + ("" if marker else f"all showed their ready line after {booted} s, ")
        + f"the wave counted all booted after {counted.get('booted')} s "
        f"({last.get('booted')} booted, {last.get('failed')} failed)")
    # How late the beat started it (WEBVIRT_WAVES_INTERVAL=1 here): part of the figure, shown apart.
    beat_delay = (datetime.fromisoformat(last["started"]) - start_at).total_seconds() if last.get("started") else None
    ended = time.monotonic()
    api.obj("POST", f"/api/v1/waves/{wave['id']}/end/")
    wait_until(lambda: gone(names), 180, "the wave's machines removed after its end", procs)
    removal = time.monotonic() - ended
    log(f"wave: ended; its {count} machines removed with their disks after {removal:.1f} s")
    return {"all_booted_s": booted, "all_running_s": counted.get("running"),
            "started_after_s": round(beat_delay, 2) if beat_delay is not None else None,
            "wave_counted_booted_s": counted.get("booted"), "not_booted": count - int(last.get("booted") or 0),
            "booted_by": "the wave's count (its job read each ready line)" if marker else "each guest's ready line",
            "failed": last.get("failed"), "removed_after_end_s": round(removal, 1)}


def clone_phase(api: Api, template: int, count: int, prefix: str, pool: str, procs: Processes) -> dict:
    names = [f"{prefix}c{n:02}" for n in range(1, count + 1)]
    t0 = time.monotonic()
    job = api.obj("POST", f"/api/v1/templates/{template}/clone/", {
        "count": count, "name_pattern": f"{prefix}c{{n:02}}", "mode": "linked", "start": True}, expect=202)["job"]
    log(f"clone: {count} linked clones requested at once")
    watch, booted = watch_booted(names, t0, procs)
    not_booted = stop_watch(watch, "clone")
    state = api.wait_job(job)
    log(f"clone: job {state['state']} after {state['duration']:.1f} s; all showed their ready line after {booted} s")
    remove_domains(f"{prefix}c", pool, keep={f"{prefix}base.qcow2"})
    wait_until(lambda: api.obj("GET", f"/api/v1/domains/?search={prefix}c&page_size=1")["count"] == 0, 60,
               "the clones gone from the domain list", procs)
    return {"all_booted_s": booted, "all_running_s": watch.last("running"), "job_s": round(state["duration"], 2),
            "not_booted": not_booted}


def wave_against_clone(api: Api, template: int, users: list[str], prefix: str, pool: str,
                       procs: Processes, marker: bool) -> dict:
    wave = wave_phase(api, template, users, prefix, procs, marker)
    time.sleep(3)  # the removals' last events settle
    clone = clone_phase(api, template, len(users), prefix, pool, procs)
    met = (wave["all_booted_s"] is not None and clone["all_booted_s"] is not None
           and wave["all_booted_s"] <= clone["all_booted_s"] and not wave["not_booted"] and not clone["not_booted"])
    return {"machines": len(users), "seconds": wave["all_booted_s"], "clone_request_seconds": clone["all_booted_s"],
            "wave": wave, "clone_request": clone, "goal": "the wave's start time to all booted no slower than an "
            "immediate clone request's", "goal_met": met}


# Warm pool hand-outs ----------------------------------------------------------------------------------

def warm_phase(api: Api, student: Api, template: int, size: int, handouts: int, prefix: str,
               procs: Processes) -> dict:
    def pool() -> dict:
        return api.obj("GET", f"/api/v1/templates/{template}/warm/")

    started = time.monotonic()
    api.obj("POST", f"/api/v1/templates/{template}/warm/", {"count": size, "boot_marker": READY_MARKER})
    wait_until(lambda: pool()["warm"] >= size, 300, f"{size} warm machines", procs)
    filled = time.monotonic() - started
    log(f"warm: {size} machines warm after {filled:.1f} s")
    expires = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    times: list[float] = []
    served_warm, waited, refill = 0, 0.0, None
    for n in range(1, handouts + 1):
        before = time.monotonic()
        wait_until(lambda: pool()["warm"] >= 1, 300, "a warm machine", procs)
        waited += time.monotonic() - before
        t = time.monotonic()
        try:
            answer = student.obj("POST", f"/api/v1/templates/{template}/clone/", {
                "count": 1, "name_pattern": f"{prefix}s{{n:02}}", "mode": "linked", "start": True, "first": n,
                "expires_at": expires}, expect=201)
        except BenchError as exc:
            if " answered 202," not in str(exc):
                raise
            answer = {"warm": False}  # no warm machine was free after all: a clone job makes it
            log(f"warm: hand-out {n} found no warm machine: {exc}")
        took = time.monotonic() - t
        times.append(took)
        served_warm += bool(answer.get("warm"))
        if answer.get("warm") and answer["domain"]["state"] != "running":
            raise BenchError(f"hand-out {n} answered a machine that is {answer['domain']['state']}")
        if n == 1:  # the refill time, from a full pool
            wait_until(lambda: pool()["warm"] >= size, 300, f"the pool back to {size} warm", procs)
            refill = time.monotonic() - t
            log(f"warm: the first hand-out took {took:.3f} s; the pool was back to {size} warm {refill:.1f} s later")
    log(f"warm: {handouts} hand-outs, {served_warm} served warm; median {median(times):.3f} s, "
        f"p95 {percentile(times, 0.95):.3f} s, slowest {max(times):.3f} s; {waited:.1f} s spent waiting for refills")
    p95 = percentile(times, 0.95)
    return {
        "handout": {"requests": handouts, "served_warm": served_warm, "median_s": round(median(times), 3),
                    "p95_s": round(p95, 3), "max_s": round(max(times), 3), "pool_size": size,
                    "goal_seconds": GOAL_HANDOUT_SECONDS,
                    "goal_met": p95 < GOAL_HANDOUT_SECONDS and served_warm == handouts},
        "refill": {"seconds": round(refill, 1) if refill is not None else None, "pool_size": size,
                   "first_fill_s": round(filled, 1), "waited_for_refills_s": round(waited, 1)},
    }


# The run -----------------------------------------------------------------------------------------------

def start_processes(env: dict[str, str], procs: Processes, tmp: Path) -> int:
    port = free_port()
    procs.start("web", [str(UVICORN), "webvirt.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                        "--ws", "websockets", "--ws-per-message-deflate", "false", "--no-proxy-headers"])
    procs.start("worker", [str(PYTHON.parent / "celery"), "-A", "webvirt", "worker", "-l", "warning",
                           "--concurrency", "2", "--hostname", f"bench-waves-{uuid.uuid4().hex[:6]}@%h"])
    procs.start("beat", [str(PYTHON.parent / "celery"), "-A", "webvirt", "beat", "-l", "warning",
                         "--schedule", str(tmp / "celerybeat-schedule")])
    procs.start("watcher", [str(PYTHON), "manage.py", "watch", "--holder", f"bench-waves-{uuid.uuid4().hex[:6]}"])
    wait_for_web(port, procs)
    return port


def run(args: argparse.Namespace, env: dict[str, str], procs: Processes, tmp: Path, conn: libvirt.virConnect,
        pool: libvirt.virStoragePool | None, prefix: str) -> dict:
    token = prepare_database(env, flush=False)
    users = [f"wvuser{n:02}" for n in range(1, args.count + 1)]
    create_users(env, [*users, STUDENT])
    student_token = manage(env, "apitoken", STUDENT).strip().splitlines()[-1]
    port = start_processes(env, procs, tmp)
    api = Api(port, token)
    api.obj("POST", "/api/v1/hosts/", {"name": "test driver", "uri": TEST_URI}, expect=201)
    log(f"web, worker, beat and watcher up; {ADMIN_USER} registered {TEST_URI}")
    result: dict = {"cores": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    if "bulk" in args.phases:
        result["bulk_shutdown"] = bulk(api, conn, procs, args.bulk)
    if pool is not None:
        base = tmp / "pool" / f"{prefix}base.qcow2"
        shutil.copyfile(ensure_image(), base)
        pool.refresh(0)
        host = api.obj("POST", "/api/v1/hosts/", {"name": "local qemu", "uri": QEMU_URI}, expect=201)["id"]
        template = make_template(api, host, tiny_domain_xml(f"{prefix}base", str(base), vnc=False), f"{prefix}tpl",
                                 [STUDENT])
        time.sleep(3)  # let the watcher's first resynchronisation of the host pass
        log(f"template {prefix}tpl of the tiny guest on {QEMU_URI}")
        if "wave" in args.phases:
            result["wave"] = wave_against_clone(api, template, users, prefix, pool.name(), procs,
                                                not args.no_marker)
        if "warm" in args.phases:
            result.update(warm_phase(api, Api(port, student_token), template, args.warm, args.handouts, prefix,
                                     procs))
    result["load_after"] = round(os.getloadavg()[0], 2)
    result["goal_met"] = all(part["goal_met"] for part in result.values() if isinstance(part, dict)
                             and "goal_met" in part)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk", type=int, default=200, help="domains in the bulk shutdown (default 200)")
    parser.add_argument("--count", type=int, default=20, help="machines in the wave and the clone request")
    parser.add_argument("--warm", type=int, default=4, help="the warm pool's size (default 4)")
    parser.add_argument("--handouts", type=int, default=20, help="hand-outs from the warm pool (default 20)")
    parser.add_argument("--phases", default="bulk,wave,warm", help="which parts to run (default all)")
    parser.add_argument("--no-marker", action="store_true",
                        help="the wave's job checks boots by 'running 10 s', not by the guest's ready line")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-waves-"))
    os.chmod(tmp, 0o755)  # qemu (user libvirt-qemu) must reach the pool inside it
    env = bench_env(tmp / "state", None)
    env["WEBVIRT_WAVES_INTERVAL"] = "1"  # beat ticks the waves every second
    procs = Processes(env, tmp)
    conn = libvirt.open(TEST_URI)  # also keeps the shared test driver's state alive
    prefix = f"wvb{uuid.uuid4().hex[:6]}-"
    result: dict | None = None
    pool = None
    try:
        if args.phases & {"wave", "warm"}:
            qemu = open_libvirt()
            pool = private_pool(qemu, tmp / "pool", f"webvirt-bench-{prefix.rstrip('-')}")
            qemu.close()
        result = run(args, env, procs, tmp, conn, pool, prefix)
    except BenchError as exc:
        log(f"failed: {exc}")
        procs.log_tails()
    finally:
        procs.stop()
        conn.close()
        if pool is not None:
            cleanup_qemu(prefix, pool.name())
        with contextlib.suppress(SystemExit):
            manage(env, "flush", "--noinput")
        keep_or_remove(tmp, args.keep)
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


def cleanup_qemu(prefix: str, pool: str) -> None:
    """Every domain named `prefix…` (template source, wave, clones, warm and handed-out machines), every
    volume of the bench's pool, and the pool."""
    try:
        remove_domains(prefix, pool, keep=set())
        fresh = open_libvirt()
        fresh.storagePoolLookupByName(pool).destroy()
        fresh.close()
    except libvirt.libvirtError as exc:
        log(f"cleaning up {pool}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
