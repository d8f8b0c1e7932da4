#!/usr/bin/env python3
"""How fast snapshots are through webvirt's API, and what webvirt adds over virsh.

    .venv/bin/python bench/snapshots.py [--repeat 3] [--list-count 50] [--list-gets 20] [--keep]

On real QEMU (qemu:///system, domain type 'qemu': emulation), with linked clones of the tiny test
guest. Everything runs on a state of its own, as bench/clone.py does: a temporary WEBVIRT_STATE_DIR
with its own SQLite database, its own Redis key prefix (so its own job queue), its own web server
(uvicorn), Celery worker and event watcher, and a temporary directory pool; all of it (and this
run's Redis keys) is removed at the end, also when the run fails.

Each figure is the time from the POST until the job has succeeded (its state polled every 50 ms),
the median of --repeat runs:
- internal_create_s: an internal snapshot with memory of a running, booted guest;
- internal_revert_s: reverting that guest to one of them (it runs again afterwards);
- virsh_create_s, virsh_revert_s: `virsh snapshot-create-as` (internal, with memory) and
  `virsh snapshot-revert` on the same guest, interleaved with webvirt's; *_overhead_s is webvirt's
  median minus virsh's;
- external_create_s: an external disk-only snapshot of another running guest;
- external_revert_s: webvirt's own revert of it (force off, new overlay, redefine, free files),
  the guest started again before each;
- virsh_destroy_s: `virsh destroy` of that guest, started the same way: what libvirt alone takes
  to force it off, which both webvirt's external revert and the reset do first;
- reset_s: resetting a running linked clone that has one snapshot to its template;
- list_internal_s, list_external_s: `GET /api/v1/domains/<id>/snapshots/` with --list-count
  snapshots on a shut-off domain (made through libvirt directly, to be quick), the median of
  --list-gets requests, repeated --repeat times.

Where a job's time goes is printed to stderr for each run: the POST's answer, the wait in the queue
(the job's `started` - `created`), the run itself (`finished` - `started`) and the rest (polling).
Progress goes to stderr; the last line of stdout is one JSON object, every figure in seconds.
Run it when the machine is otherwise idle (`uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import Api, BenchError, Processes, bench_env, free_port, keep_or_remove, log, manage, median, wait_for_web  # noqa: E402  (bench/ is on sys.path)

from tests.guest.guest import ensure_image, tiny_domain_xml  # noqa: E402
from tests.guest.serial import SerialShell  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
URI = "qemu:///system"
ADMIN = "benchadmin"
POLL_S = 0.05
BOOT_TIMEOUT = 60.0
GOALS = {"create_s": 2.0, "revert_s": 5.0, "reset_s": 2.0, "list_s": 0.3, "overhead_s": 0.5}


def open_libvirt(wait: float = 60) -> libvirt.virConnect:
    """A new connection, waiting for libvirtd if it is being restarted (by other work on the machine)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return libvirt.open(URI)
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def cleanup(prefix: str, pool_name: str | None, redis_url: str | None, redis_prefix: str) -> None:
    """Force off every domain named `prefix…`, drop its snapshots' metadata and undefine it; delete the
    pool's volumes and the pool; delete this run's Redis keys. Each step is tried even if one fails."""
    try:
        conn = open_libvirt()
    except libvirt.libvirtError as exc:
        log(f"cleanup: libvirt does not answer: {exc}")
        conn = None
    if conn is not None:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(prefix):
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                for snap in dom.listAllSnapshots(0):
                    try:
                        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
                    except libvirt.libvirtError:
                        pass  # gone with its parent
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError as exc:
                log(f"cleanup: could not remove {dom.name()}: {exc}")
        if pool_name:
            try:
                pool = conn.storagePoolLookupByName(pool_name)
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()  # transient: gone with this
            except libvirt.libvirtError as exc:
                log(f"cleanup: pool {pool_name}: {exc}")
        conn.close()
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"*{redis_prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
        except Exception as exc:  # cleanup goes on
            log(f"cleanup: Redis keys {redis_prefix}*: {exc}")


# Measuring ---------------------------------------------------------------------------------------

def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()




def timed_job(api: Api, label: str, method: str, path: str, payload: dict | None = None) -> tuple[float, dict]:
    """Seconds from the POST until its job has succeeded, and the parts of it (also logged)."""
    t0 = time.monotonic()
    answer = api.obj(method, path, payload, expect=202)
    answered = time.monotonic() - t0
    job = api.wait_job(answer["job"], poll=POLL_S)
    total = time.monotonic() - t0
    if job["state"] != "succeeded":
        raise BenchError(f"{label}: job {job['id']} {job['state']}: {job['error']}\n{job['log']}")
    queue = when(job["started"]) - when(job["created"])
    run = when(job["finished"]) - when(job["started"])
    parts = {"answer": round(answered, 3), "queue": round(queue, 3), "run": round(run, 3),
             "rest": round(total - answered - queue - run, 3)}
    extra = f" ({answer['kind']}: {answer['reason']})" if "kind" in answer else ""
    log(f"{label}: {total:.2f} s = POST answered {parts['answer']:.3f} + queued {parts['queue']:.3f} + "
        f"ran {parts['run']:.3f} + polling {parts['rest']:.3f}{extra}; log: {job['log']}")
    return total, parts


def virsh(*args: str) -> float:
    t0 = time.monotonic()
    result = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if result.returncode != 0:
        raise BenchError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return elapsed


def booted(conn: libvirt.virConnect, name: str) -> None:
    """Wait until the running guest's shell answers on its serial port."""
    with SerialShell(conn.lookupByName(name)) as shell:
        shell.wait_for_shell(BOOT_TIMEOUT)


def start(api: Api, conn: libvirt.virConnect, row: dict, wait_boot: bool = True) -> None:
    api.obj("POST", f"/api/v1/domains/{row['id']}/start/")
    if wait_boot:
        booted(conn, row["name"])


def stat(values: list[float]) -> float:
    return round(median(values), 3)


# Phases ------------------------------------------------------------------------------------------

def internal_phase(api: Api, conn: libvirt.virConnect, row: dict, repeat: int, out: dict, parts: dict) -> None:
    """Internal snapshots with memory and their reverts, webvirt's and virsh's interleaved."""
    name, base = row["name"], f"/api/v1/domains/{row['id']}/snapshots/"
    start(api, conn, row)
    creates, reverts, v_creates, v_reverts = [], [], [], []
    for i in range(1, repeat + 1):
        seconds, p = timed_job(api, f"internal create #{i}", "POST", base, {"name": f"m{i}", "memory": True})
        creates.append(seconds)
        parts.setdefault("internal_create", []).append(p)
        v_creates.append(virsh("snapshot-create-as", "--domain", name, "--name", f"v{i}"))
        log(f"virsh snapshot-create-as #{i}: {v_creates[-1]:.2f} s")
    if conn.lookupByName(name).snapshotLookupByName("v1", 0).getXMLDesc(0).count("snapshot='internal'") < 2:
        raise BenchError("virsh's snapshot is not internal with memory")
    for i in range(1, repeat + 1):
        seconds, p = timed_job(api, f"internal revert #{i}", "POST", f"{base}m{i}/revert/")
        reverts.append(seconds)
        parts.setdefault("internal_revert", []).append(p)
        v_reverts.append(virsh("snapshot-revert", "--domain", name, "--snapshotname", f"v{i}"))
        log(f"virsh snapshot-revert #{i}: {v_reverts[-1]:.2f} s")
    if conn.lookupByName(name).state()[0] != libvirt.VIR_DOMAIN_RUNNING:
        raise BenchError(f"{name} does not run after the reverts")
    out.update(internal_create_s=stat(creates), internal_revert_s=stat(reverts), virsh_create_s=stat(v_creates),
               virsh_revert_s=stat(v_reverts))
    out["create_overhead_s"] = round(out["internal_create_s"] - out["virsh_create_s"], 3)
    out["revert_overhead_s"] = round(out["internal_revert_s"] - out["virsh_revert_s"], 3)
    conn.lookupByName(name).destroy()


def external_phase(api: Api, conn: libvirt.virConnect, row: dict, repeat: int, out: dict, parts: dict) -> None:
    base = f"/api/v1/domains/{row['id']}/snapshots/"
    start(api, conn, row)
    creates, reverts = [], []
    for i in range(1, repeat + 1):
        seconds, p = timed_job(api, f"external create #{i}", "POST", base,
                               {"name": f"e{i}", "kind": "external", "memory": False})
        creates.append(seconds)
        parts.setdefault("external_create", []).append(p)
    for i in range(1, repeat + 1):
        if i > 1:
            start(api, conn, row, wait_boot=False)  # a revert of a running guest: it forces it off
            time.sleep(1)
        seconds, p = timed_job(api, f"external revert #{i}", "POST", f"{base}e{i}/revert/")
        reverts.append(seconds)
        parts.setdefault("external_revert", []).append(p)
        if conn.lookupByName(row["name"]).isActive():
            raise BenchError(f"{row['name']} still runs after webvirt's external revert")
    # For comparison: how long libvirt alone takes to force the same guest off (webvirt's revert does it).
    destroys = []
    for _ in range(repeat):
        start(api, conn, row, wait_boot=False)
        time.sleep(1)
        destroys.append(virsh("destroy", row["name"]))
        log(f"virsh destroy: {destroys[-1]:.2f} s")
    out.update(external_create_s=stat(creates), external_revert_s=stat(reverts), virsh_destroy_s=stat(destroys))


def reset_phase(api: Api, conn: libvirt.virConnect, row: dict, repeat: int, out: dict, parts: dict) -> None:
    resets = []
    for i in range(1, repeat + 1):
        start(api, conn, row, wait_boot=i == 1)
        timed_job(api, f"reset: snapshot before #{i}", "POST", f"/api/v1/domains/{row['id']}/snapshots/",
                  {"name": f"r{i}"})
        seconds, p = timed_job(api, f"reset #{i}", "POST", f"/api/v1/domains/{row['id']}/reset-to-template/")
        resets.append(seconds)
        parts.setdefault("reset", []).append(p)
        if conn.lookupByName(row["name"]).listAllSnapshots(0):
            raise BenchError(f"{row['name']} has snapshots after the reset")
    out["reset_s"] = stat(resets)


def make_snapshots(conn: libvirt.virConnect, pool: libvirt.virStoragePool, folder: Path, row: dict, kind: str,
                   count: int) -> float:
    """`count` snapshots of the shut-off domain through libvirt, each the child of the one before."""
    dom = conn.lookupByName(row["name"])
    t0 = time.monotonic()
    for i in range(1, count + 1):
        if kind == "internal":
            dom.snapshotCreateXML(f"<domainsnapshot><name>l{i:02}</name></domainsnapshot>", 0)
        else:
            overlay = folder / f"{row['name']}-vda.x{i:02}.qcow2"
            dom.snapshotCreateXML(
                f"<domainsnapshot><name>x{i:02}</name><memory snapshot='no'/><disks><disk name='vda' "
                f"snapshot='external' type='file'><driver type='qcow2'/><source file='{overlay}'/></disk></disks>"
                "</domainsnapshot>", libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    pool.refresh(0)  # as webvirt does after taking one: the pool knows the new overlays
    return time.monotonic() - t0


def list_phase(api: Api, row: dict, kind: str, count: int, gets: int, repeat: int) -> float:
    path = f"/api/v1/domains/{row['id']}/snapshots/"
    listed = api.call("GET", path)  # warm-up
    assert isinstance(listed, list)
    if len(listed) != count or {s["kind"] for s in listed} != {kind} or listed[-1]["depth"] != count - 1:
        raise BenchError(f"the list of {row['name']} is not {count} {kind} snapshots in a chain: {listed[:2]}…")
    rounds = []
    for r in range(repeat):
        times = []
        for _ in range(gets):
            t0 = time.monotonic()
            api.call("GET", path)
            times.append(time.monotonic() - t0)
        rounds.append(median(times))
        log(f"list of {count} {kind} snapshots, round {r + 1}: median {rounds[-1] * 1000:.0f} ms, "
            f"min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f} ms over {gets} GETs")
    return stat(rounds)


# The run -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--list-count", type=int, default=50)
    parser.add_argument("--list-gets", type=int, default=20)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    if not shutil.which("virsh"):
        parser.error("virsh is missing")

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-snapshots-"))
    os.chmod(tmp, 0o755)  # qemu (user libvirt-qemu) must reach the pool inside it
    env = bench_env(tmp / "state", None)
    procs = Processes(env, tmp)
    tag = uuid.uuid4().hex[:6]
    prefix = f"wvs{tag}-"
    pool_name = f"webvirt-bench-{tag}"
    made_pool = False
    result: dict | None = None
    try:
        conn = open_libvirt()
        (tmp / "pool").mkdir(mode=0o755)
        pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>{pool_name}</name><target>"
                                         f"<path>{tmp / 'pool'}</path></target></pool>", 0)
        made_pool = True
        result = run(args, tmp, env, procs, conn, pool, prefix)
    except BenchError as exc:
        log(f"failed: {exc}")
        procs.log_tails()
    finally:
        procs.stop()
        cleanup(prefix, pool_name if made_pool else None, env.get("REDIS_URL"), env["WEBVIRT_REDIS_PREFIX"])
        keep_or_remove(tmp, args.keep)
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, tmp: Path, env: dict[str, str], procs: Processes, conn: libvirt.virConnect,
        pool: libvirt.virStoragePool, prefix: str) -> dict:
    folder = tmp / "pool"
    base = folder / f"{prefix}base.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(ensure_image()), str(base)], check=True)
    pool.refresh(0)

    log("preparing the database and starting the web server, worker and watcher…")
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", f"from django.contrib.auth import get_user_model; "
                               f"get_user_model().objects.create_superuser({ADMIN!r}, '', 'x-' + {prefix!r})")
    token = manage(env, "apitoken", ADMIN).strip().splitlines()[-1]
    port = free_port()
    procs.start("web", [str(ROOT / ".venv/bin/uvicorn"), "webvirt.asgi:application", "--host", "127.0.0.1",
                        "--port", str(port), "--log-level", "warning"])
    procs.start("worker", [str(ROOT / ".venv/bin/celery"), "-A", "webvirt", "worker", "-l", "warning",
                           "--concurrency", str(args.worker_concurrency), "--hostname", f"bench-{prefix}@%h"])
    procs.start("watcher", [str(PYTHON), "manage.py", "watch", "--holder", f"bench-{prefix}"])
    wait_for_web(port, procs)
    api = Api(port, token)
    host = api.obj("POST", "/api/v1/hosts/", {"name": "local qemu", "uri": URI}, expect=201)["id"]
    source = api.obj("POST", "/api/v1/domains/", {"host": host, "xml": tiny_domain_xml(
        f"{prefix}template", str(base), vnc=False)}, expect=201)["id"]
    template = api.obj("POST", "/api/v1/templates/", {"domain": source, "name": "bench template"},
                       expect=201)["id"]
    roles = ["int", "ext", "reset", "listi", "liste"]
    job = api.obj("POST", f"/api/v1/templates/{template}/clone/", {
        "count": len(roles), "name_pattern": prefix + "g{n}", "mode": "linked", "start": False}, expect=202)["job"]
    if (done := api.wait_job(job, poll=POLL_S))["state"] != "succeeded":
        raise BenchError(f"the clone job failed: {done['error']}")
    found = api.obj("GET", f"/api/v1/domains/?search={prefix}g&page_size=100")["results"]
    rows = sorted((r for r in found if r["name"].startswith(prefix + "g")), key=lambda r: r["name"])
    if len(rows) != len(roles):
        raise BenchError(f"the clone job made {[r['name'] for r in rows]}")
    guest = dict(zip(roles, rows, strict=True))
    time.sleep(3)  # let the watcher's first resynchronisation of the host pass
    procs.check()

    out: dict = {"repeat": args.repeat, "cores": os.cpu_count(), "load_before": os.getloadavg()[0],
                 "libvirt": conn.getLibVersion(), "qemu": conn.getVersion()}
    parts: dict[str, list[dict]] = {}
    log(f"internal snapshots with memory of {guest['int']['name']}, webvirt and virsh…")
    internal_phase(api, conn, guest["int"], args.repeat, out, parts)
    log(f"external snapshots of {guest['ext']['name']}…")
    external_phase(api, conn, guest["ext"], args.repeat, out, parts)
    log(f"reset to template of {guest['reset']['name']}…")
    reset_phase(api, conn, guest["reset"], args.repeat, out, parts)
    for kind, role in (("internal", "listi"), ("external", "liste")):
        made = make_snapshots(conn, pool, folder, guest[role], kind, args.list_count)
        log(f"{args.list_count} {kind} snapshots of {guest[role]['name']} made through libvirt in {made:.1f} s")
        out[f"list_{kind}_s"] = list_phase(api, guest[role], kind, args.list_count, args.list_gets, args.repeat)
    procs.check()

    out["breakdown"] = {what: {k: stat([p[k] for p in runs]) for k in runs[0]} for what, runs in parts.items()}
    out["goals"] = {
        "internal_create_within_2s": out["internal_create_s"] <= GOALS["create_s"],
        "external_create_within_2s": out["external_create_s"] <= GOALS["create_s"],
        "internal_revert_within_5s": out["internal_revert_s"] <= GOALS["revert_s"],
        "external_revert_within_5s": out["external_revert_s"] <= GOALS["revert_s"],
        "reset_within_2s": out["reset_s"] <= GOALS["reset_s"],
        "list_50_internal_within_300ms": out["list_internal_s"] <= GOALS["list_s"],
        "list_50_external_within_300ms": out["list_external_s"] <= GOALS["list_s"],
        "create_overhead_over_virsh_under_0.5s": out["create_overhead_s"] < GOALS["overhead_s"],
        "revert_overhead_over_virsh_under_0.5s": out["revert_overhead_s"] < GOALS["overhead_s"],
    }
    return out


if __name__ == "__main__":
    sys.exit(main())
