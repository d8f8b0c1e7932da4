#!/usr/bin/env python3
"""Exam week: a bulk shutdown of 200 domains (and, where built, clone waves and warm pools).

    .venv/bin/python bench/waves.py [--bulk 200]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR with SQLite, a Redis key prefix of
its own): starts the web process, a Celery worker (concurrency 2) and an event watcher as the Procfile
does, registers libvirt's test driver (`test+unix:///default`) through the API, then

- **bulk**: defines and starts --bulk test-driver domains with libvirt, waits until the cache shows
  them running, runs one small bulk job first (so the worker's start-up is not counted), then times
  `POST /api/v1/domains/bulk/ {"filter": {"search": ...}, "action": "shutdown"}` until its job has
  succeeded, and checks with libvirt that every one is shut off (goal: under 10 s).

Progress goes to stderr; the last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ADMIN_USER,
    PYTHON,
    UVICORN,
    Api,
    BenchError,
    Processes,
    bench_env,
    free_port,
    keep_or_remove,
    log,
    manage,
    prepare_database,
    wait_for_web,
)
from events_latency import TEST_URI, test_domain_xml

GOAL_BULK_SECONDS = 10.0

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


def run(args: argparse.Namespace, env: dict[str, str], procs: Processes, conn: libvirt.virConnect) -> dict:
    token = prepare_database(env, flush=False)
    port = free_port()
    procs.start("web", [str(UVICORN), "webvirt.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                        "--ws", "websockets", "--ws-per-message-deflate", "false", "--no-proxy-headers"])
    procs.start("worker", [str(PYTHON.parent / "celery"), "-A", "webvirt", "worker", "-l", "warning",
                           "--concurrency", "2"])
    procs.start("watcher", [str(PYTHON), "manage.py", "watch", "--holder", f"bench-waves-{uuid.uuid4().hex[:6]}"])
    wait_for_web(port, procs)
    api = Api(port, token)
    api.obj("POST", "/api/v1/hosts/", {"name": "test driver", "uri": TEST_URI}, expect=201)
    log(f"web, worker and watcher up; {ADMIN_USER} registered {TEST_URI}")
    result: dict = {"bulk_shutdown": bulk(api, conn, procs, args.bulk)}
    result["goal_met"] = all(part["goal_met"] for part in result.values() if isinstance(part, dict))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk", type=int, default=200, help="domains in the bulk shutdown (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-waves-"))
    env = bench_env(tmp / "state", None)
    procs = Processes(env, tmp)
    conn = libvirt.open(TEST_URI)  # also keeps the shared test driver's state alive
    result: dict | None = None
    try:
        result = run(args, env, procs, conn)
    except BenchError as exc:
        log(f"failed: {exc}")
        for name in procs.procs:
            log(f"{name} log:\n{procs.tail(name)}")
    finally:
        procs.stop()
        conn.close()
        with contextlib.suppress(SystemExit):
            manage(env, "flush", "--noinput")
        keep_or_remove(tmp, args.keep)
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
