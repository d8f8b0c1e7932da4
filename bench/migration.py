#!/usr/bin/env python3
"""How fast webvirt migrates a running guest between two hosts, and what it adds over virsh.

    .venv/bin/python bench/migration.py [--repeat 3] [--cancel-bandwidth 4] [--keep]

Needs root. The two hosts are two libvirt session daemons on this machine (tests/migration/daemons.py,
started and stopped here), migrating over tcp://127.0.0.1; guests are the tiny test guest, emulated, each
booted to its shell before it moves. webvirt runs on a state of its own, as bench/snapshots.py does: a
temporary WEBVIRT_STATE_DIR with its own SQLite database, its own Redis key prefix (so its own job queue),
its own web server (uvicorn), Celery worker and event watcher. Everything (daemons, their QEMUs, files,
this run's Redis keys) is removed at the end, also when the run fails.

Each webvirt figure is the time from `POST /api/v1/domains/<id>/migrate/` until the job has succeeded (its
`finished` time; the API is polled only every 250 ms, since every request costs CPU that the two emulated
guests need); downtime is the one the job reports (libvirt's completed job statistics on the
destination). Moves alternate between webvirt and `virsh migrate` on the same guest, back and forth,
--repeat times each (who goes first alternates, so each tool moves a -> b as often as b -> a); medians are
reported. virsh_libvirt_job_ms (in "breakdown") is the migration job proper of virsh's moves (libvirt's
completed job statistics: time_elapsed), without the preparing (the destination's QEMU starting) and the
finishing (the source's QEMU stopping) around it; webvirt's job reads (and so drops) those statistics itself.
- shared: an idle guest whose disk (a whole image) is in the pool both hosts see at the same path;
- copy_all: a 64 MiB disk (the guest's 33 MiB image under a qcow2 overlay, with 31 MiB of data written
  past the image's end: 46 MiB of data) copied whole into the destination's pool, arriving flattened (the
  moves after the first carry that flattened disk; the copy a move leaves on its source is deleted:
  webvirt does it itself, the bench does it after virsh);
- copy_inc: a linked clone (an overlay on a base image that both hosts hold in their pool) whose overlay
  alone is copied;
- cancel: a copy_all move with --cancel-bandwidth MiB/s, cancelled through the API once data moves: the
  time from the cancel request until the job is cancelled; then the destination must hold nothing of it
  (no domain, no volume, no file) and the guest must still run on the source.
virsh gets the same flags webvirt asks libvirt for (--live --persistent --undefinesource, --unsafe or
--copy-storage-*, the disk's destination path in --xml/--persistent-xml, --listen-address); its
destination volume is made beforehand, untimed (webvirt's figure includes making it).

Where webvirt's time goes ("breakdown", and stderr for each move): the POST until its job was written
(the pre-flight check runs in the request), the wait in the queue, the job's run, of which the libvirt call
(as the job's message says); they add up to the total. "answer" is when the POST's answer arrived.
Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import libvirt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import Api, BenchError, Processes, bench_env, free_port, keep_or_remove, log, manage, median, wait_for_web  # noqa: E402
from snapshots import when  # noqa: E402

from tests.guest.guest import READY_MARKER, ensure_image, tiny_domain_xml  # noqa: E402
from tests.guest.serial import SerialShell  # noqa: E402
from tests.migration.daemons import MIGRATION_URI, POOL, SessionDaemon, TwoHosts  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
ADMIN = "benchadmin"
POLL_S = 0.25  # polling the API costs CPU the two emulated guests need: figures come from the job's own times
BOOT_TIMEOUT = 120.0
MIB = 1024 * 1024
BIG_DISK_MIB = 64
GOALS = {"shared_s": 2.0, "downtime_ms": 300, "copy_all_s": 5.0, "copy_inc_s": 5.0, "cancel_s": 2.0,
         "overhead_s": 1.0}


# Guests and files ----------------------------------------------------------------------------------

class Lab:
    """The two daemons, their connections and the bench's webvirt API, with what moves a guest."""

    def __init__(self, hosts: TwoHosts, api: Api, host_ids: dict[str, int], tmp: Path) -> None:
        self.hosts, self.api, self.host_ids, self.tmp = hosts, api, host_ids, tmp
        self.conns = {d.name: d.open() for d in hosts.hosts}
        self.refresh()  # the disks were made behind the pools' backs

    def daemon(self, name: str) -> SessionDaemon:
        return self.hosts.a if name == "a" else self.hosts.b

    def other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def refresh(self) -> None:
        for conn in self.conns.values():
            for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                pool.refresh(0)

    def row(self, name: str, host: str, timeout: float = 30) -> dict:
        """webvirt's row of `name`, once it shows the guest running on `host` (after a virsh move the
        watcher makes it anew there)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.api.obj("GET", f"/api/v1/domains/?search={name}&page_size=50")["results"]
            rows = [r for r in found if r["name"] == name]
            if len(rows) == 1 and rows[0]["host"] == self.host_ids[host] and rows[0]["state"] == "running":
                return rows[0]
            if time.monotonic() > deadline:
                raise BenchError(f"webvirt does not show {name} running on {host}: {rows}")
            time.sleep(0.1)

    def running_on(self, name: str) -> list[str]:
        return [h for h, conn in self.conns.items()
                if name in {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}]

    def drop_disk(self, host: str, file_name: str) -> None:
        """Delete the copy a disk-copying move left on the host it left (libvirt and webvirt keep it)."""
        conn = self.conns[host]
        pool = conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
        try:
            pool.storageVolLookupByName(file_name).delete(0)
        except libvirt.libvirtError:
            pass

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                conn.close()
            except libvirt.libvirtError:
                pass


def user_file(hosts: TwoHosts, *argv: str) -> None:
    hosts.run_as_user(*argv)


def prepare_images(hosts: TwoHosts) -> dict[str, dict]:
    """The guests' disks, made as the daemons' user: {guest: {"disk": path on a, "storage": mode}}."""
    image = ensure_image()
    for daemon in hosts.hosts:  # the base of the linked clone, in both hosts' pool of the same name
        base = daemon.pool_dir / "wvm-base.qcow2"
        shutil.copyfile(image, base)
        hosts.give(base)
    shared = hosts.shared_dir / "wvm-shared.qcow2"
    shutil.copyfile(image, shared)
    hosts.give(shared)
    a_base = hosts.a.pool_dir / "wvm-base.qcow2"
    big = hosts.a.pool_dir / "wvm-big.qcow2"
    user_file(hosts, "qemu-img", "create", "-q", "-f", "qcow2", "-b", str(a_base), "-F", "qcow2", str(big),
              f"{BIG_DISK_MIB}M")
    # Data past the end of the image (33 MiB): the guest never reads it, so it still boots.
    user_file(hosts, "qemu-io", "-f", "qcow2", "-c", f"write -P 0xab 33M {BIG_DISK_MIB - 33}M", str(big))
    inc = hosts.a.pool_dir / "wvm-inc.qcow2"
    user_file(hosts, "qemu-img", "create", "-q", "-f", "qcow2", "-b", str(a_base), "-F", "qcow2", str(inc))
    return {"wvm-shared": {"disk": shared, "storage": "shared"}, "wvm-big": {"disk": big, "storage": "copy-all"},
            "wvm-inc": {"disk": inc, "storage": "copy-inc"}}


def boot(lab: Lab, name: str, disk: Path) -> dict:
    """Define and start the guest on a through webvirt's API; wait for its shell."""
    made = lab.api.obj("POST", "/api/v1/domains/", {"host": lab.host_ids["a"],
                                                    "xml": tiny_domain_xml(name, str(disk), vnc=False)}, expect=201)
    lab.api.obj("POST", f"/api/v1/domains/{made['id']}/start/")
    t0 = time.monotonic()
    with SerialShell(lab.conns["a"].lookupByName(name)) as shell:
        shell.wait_for(READY_MARKER, BOOT_TIMEOUT)
    log(f"{name} booted in {time.monotonic() - t0:.1f} s")
    return lab.row(name, "a")


# Moving ------------------------------------------------------------------------------------------



def move_webvirt(lab: Lab, label: str, name: str, src: str, storage: str, bandwidth: int | None = None) -> dict:
    """Migrate through the API from `src` to the other host; the figures of that move."""
    row = lab.row(name, src)
    dst = lab.other(src)
    asked, t0 = time.time(), time.monotonic()
    answer = lab.api.obj("POST", f"/api/v1/domains/{row['id']}/migrate/", {
        "host": lab.host_ids[dst], "storage": storage, "live": True, "bandwidth_mib_s": bandwidth}, expect=202)
    answered = time.monotonic() - t0
    job = lab.api.wait_job(answer["job"], poll=POLL_S)
    total = when(job["finished"]) - asked  # until the job recorded its success, not until the poll saw it
    if job["state"] != "succeeded":
        raise BenchError(f"{label}: job {job['id']} {job['state']}: {job['error']}\n{job['log']}")
    if lab.running_on(name) != [dst]:
        raise BenchError(f"{label}: {name} runs on {lab.running_on(name)}, not on {dst}")
    message = job["result"].get("message", job["message"])
    took = re.search(r" in (\d+\.\d) s", message)
    down = re.search(r"with (\d+) ms of downtime", message)
    queue = when(job["started"]) - when(job["created"])
    run = when(job["finished"]) - when(job["started"])
    figures = {"total": total, "before_job": when(job["created"]) - asked, "queue": queue, "run": run,
               "libvirt": float(took.group(1)) if took else None, "answer": answered,
               "downtime_ms": int(down.group(1)) if down else completed(lab.conns[dst], name).get("downtime")}
    log(f"{label}: webvirt {src}->{dst} {total:.2f} s = POST until its job was written {figures['before_job']:.3f} "
        f"(the answer came after {answered:.3f}) + queued {queue:.3f} + ran {run:.3f} (libvirt's migration "
        f"{figures['libvirt']} s); downtime "
        f"{figures['downtime_ms']} ms; job log: {job['log']}")
    return figures


def completed(conn: libvirt.virConnect, name: str) -> dict:
    """The destination's completed migration job statistics: "downtime", and "time_elapsed" (the migration
    proper, without libvirt's preparing and finishing around it), in ms. Kept for the next reader (without
    KEEP_COMPLETED, reading them drops them: after webvirt's job has read its downtime, nothing is left)."""
    try:
        return dict(conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
                                                     | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED))
    except libvirt.libvirtError:
        return {}


def dest_xml(dom: libvirt.virDomain, path: str) -> str:
    """The domain's migratable XML with its disk at `path` (as webvirt's DEST_XML does it)."""
    root = ElementTree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
    disk = root.find("./devices/disk[@device='disk']")
    assert disk is not None
    for below in disk.findall("./backingStore"):
        disk.remove(below)
    source = disk.find("./source")
    assert source is not None
    source.attrib.clear()
    source.set("file", path)
    return ElementTree.tostring(root, encoding="unicode")


def move_virsh(lab: Lab, label: str, name: str, src: str, storage: str) -> dict:
    """`virsh migrate` from `src` to the other host with the flags webvirt uses; its figures."""
    dst = lab.other(src)
    source, target = lab.daemon(src), lab.daemon(dst)
    args = ["virsh", "-q", "-c", source.uri, "migrate", "--live", "--persistent", "--undefinesource",
            "--listen-address", lab.hosts.LISTEN_ADDRESS]
    if storage == "shared":
        args.append("--unsafe")
    else:
        file_name = f"{name}.qcow2"
        path = str(target.pool_dir / file_name)
        # The destination's volume first, as webvirt makes it (untimed here): an overlay on the base for
        # copy-inc, an empty image of the disk's size for copy-all.
        size = lab.conns[src].storageVolLookupByPath(str(source.pool_dir / file_name)).info()[1]
        create = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if storage == "copy-inc":
            create += ["-b", str(target.pool_dir / "wvm-base.qcow2"), "-F", "qcow2"]
        user_file(lab.hosts, *create, path, str(size))
        lab.refresh()
        xml_file = lab.tmp / f"{name}-{dst}.xml"
        xml_file.write_text(dest_xml(lab.conns[src].lookupByName(name), path))
        args += ["--copy-storage-all" if storage == "copy-all" else "--copy-storage-inc", "--migrate-disks", "vda",
                 "--xml", str(xml_file), "--persistent-xml", str(xml_file)]
    args += [name, target.uri, MIGRATION_URI]
    t0 = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True)
    total = time.monotonic() - t0
    if result.returncode != 0:
        raise BenchError(f"{label}: {' '.join(args)} failed: {result.stderr.strip()}")
    if lab.running_on(name) != [dst]:
        raise BenchError(f"{label}: after virsh {name} runs on {lab.running_on(name)}, not on {dst}")
    stats = completed(lab.conns[dst], name)
    down, job_ms = stats.get("downtime"), stats.get("time_elapsed")
    log(f"{label}: virsh {src}->{dst} {total:.2f} s; downtime {down} ms; libvirt's migration job itself "
        f"{job_ms} ms (the rest: the destination's QEMU starting, the source's stopping)")
    return {"total": total, "downtime_ms": down, "libvirt_job_ms": job_ms}


def ping_pong(lab: Lab, name: str, storage: str, repeat: int) -> tuple[list[dict], list[dict]]:
    """webvirt's move and virsh's back, `repeat` times; the one going first alternates (so each goes a -> b
    as often as b -> a). Each round ends with the guest on a."""
    ours, theirs = [], []
    here = "a"
    for i in range(1, repeat + 1):
        for tool in (("webvirt", "virsh") if i % 2 else ("virsh", "webvirt")):
            there = lab.other(here)
            if tool == "webvirt":
                ours.append(move_webvirt(lab, f"{storage} #{i}", name, here, storage))
            else:
                theirs.append(move_virsh(lab, f"{storage} #{i}", name, here, storage))
            if storage != "shared":
                lab.drop_disk(here, f"{name}.qcow2")  # webvirt deletes it itself; virsh leaves it
            lab.row(name, there)  # webvirt's row follows: it can move it again
            here = there
    return ours, theirs


def cancel_runs(lab: Lab, name: str, repeat: int, bandwidth: int) -> tuple[list[float], list[str]]:
    """Start a throttled copy_all move, cancel it once data moves; seconds to cancelled, and what was left."""
    seconds, left = [], []
    for i in range(1, repeat + 1):
        row = lab.row(name, "a")
        answer = lab.api.obj("POST", f"/api/v1/domains/{row['id']}/migrate/", {
            "host": lab.host_ids["b"], "storage": "copy-all", "live": True, "bandwidth_mib_s": bandwidth},
            expect=202)
        job_id = answer["job"]
        deadline = time.monotonic() + 60
        while True:  # until libvirt's job moves data: the copy is under way
            job = lab.api.obj("GET", f"/api/v1/jobs/{job_id}/")
            moved = re.match(r"([\d,]+) of [\d,]+ MiB moved", job["message"] or "")
            if job["state"] == "running" and moved and int(moved.group(1).replace(",", "")) > 0:
                break
            if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
                raise BenchError(f"cancel #{i}: the move did not get under way: {job['state']} {job['message']}")
            time.sleep(POLL_S)
        asked = time.time()
        lab.api.obj("POST", f"/api/v1/jobs/{job_id}/cancel/")
        job = lab.api.wait_job(job_id, 60, POLL_S)
        seconds.append(when(job["finished"]) - asked)
        if job["state"] != "cancelled":
            raise BenchError(f"cancel #{i}: job {job_id} {job['state']}: {job['error']}")
        lab.refresh()
        found = leftovers(lab, name)
        left += found
        log(f"cancel #{i}: {seconds[-1]:.2f} s from the request to cancelled (the move was at "
            f"'{moved.group(0)}'); left on b: {found or 'nothing'}; runs on {lab.running_on(name)}; "
            f"job log: {job['log']}")
        if lab.running_on(name) != ["a"]:
            raise BenchError(f"cancel #{i}: {name} runs on {lab.running_on(name)} after the cancel, not on a")
    return seconds, left


def leftovers(lab: Lab, name: str) -> list[str]:
    """Whatever of `name` host b holds: a domain, a volume in its pool, a file in its pool's folder."""
    found = []
    conn = lab.conns["b"]
    if name in {d.name() for d in conn.listAllDomains(0)}:
        found.append(f"domain {name}")
    pool = conn.storagePoolLookupByName(POOL)
    found += [f"volume {v.name()}" for v in pool.listAllVolumes(0) if v.name().startswith(name)]
    found += [f"file {p.name}" for p in lab.hosts.b.pool_dir.iterdir() if p.name.startswith(name)]
    return found


# The run -----------------------------------------------------------------------------------------

def stat(values: list[float]) -> float:
    return round(median(values), 3)


def summary(moves: list[dict]) -> dict:
    keys = [k for k in moves[0] if all(m[k] is not None for m in moves)]
    return {k: stat([m[k] for m in moves]) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cancel-bandwidth", type=int, default=4, help="MiB/s of the move that is cancelled")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: the two hosts are session daemons of a user this starts")
    for tool in ("virsh", "qemu-img", "qemu-io"):
        if not shutil.which(tool):
            parser.error(f"{tool} is missing")

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-migration-"))
    env = bench_env(tmp / "state", None)
    procs = Processes(env, tmp)
    hosts = TwoHosts()
    result: dict | None = None
    lab: Lab | None = None
    try:
        log("starting two libvirt session daemons…")
        hosts.start()
        log(f"… in {hosts.started_in:.1f} s; preparing the disks")
        guests = prepare_images(hosts)
        lab = start_webvirt(args, tmp, env, procs, hosts)
        result = run(args, lab, guests)
        procs.check()
    except (BenchError, subprocess.CalledProcessError, libvirt.libvirtError) as exc:
        log(f"failed: {exc}")
        if isinstance(exc, subprocess.CalledProcessError):
            log(f"{exc.stderr}")
        procs.log_tails()
    finally:
        if lab is not None:
            lab.close()
        procs.stop()
        hosts.stop()
        drop_redis_keys(env.get("REDIS_URL"), env["WEBVIRT_REDIS_PREFIX"])
        keep_or_remove(tmp, args.keep)
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


def start_webvirt(args: argparse.Namespace, tmp: Path, env: dict[str, str], procs: Processes,
                  hosts: TwoHosts) -> Lab:
    log("preparing the database and starting the web server, worker and watcher…")
    manage(env, "migrate", "--noinput")
    tag = uuid.uuid4().hex[:6]
    manage(env, "shell", "-c", f"from django.contrib.auth import get_user_model; "
                               f"get_user_model().objects.create_superuser({ADMIN!r}, '', 'x-' + {tag!r})")
    token = manage(env, "apitoken", ADMIN).strip().splitlines()[-1]
    port = free_port()
    procs.start("web", [str(ROOT / ".venv/bin/uvicorn"), "webvirt.asgi:application", "--host", "127.0.0.1",
                        "--port", str(port), "--log-level", "warning"])
    procs.start("worker", [str(ROOT / ".venv/bin/celery"), "-A", "webvirt", "worker", "-l", "warning",
                           "--concurrency", str(args.worker_concurrency), "--hostname", f"bench-mig-{tag}@%h"])
    procs.start("watcher", [str(PYTHON), "manage.py", "watch", "--holder", f"bench-mig-{tag}"])
    wait_for_web(port, procs)
    api = Api(port, token)
    ids = {}
    for daemon in hosts.hosts:
        ids[daemon.name] = api.obj("POST", "/api/v1/hosts/", {
            "name": f"host-{daemon.name}", "uri": daemon.uri, "migration_uri": MIGRATION_URI}, expect=201)["id"]
    return Lab(hosts, api, ids, tmp)


def drop_redis_keys(redis_url: str | None, prefix: str) -> None:
    if not redis_url:
        return
    try:
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # cleanup goes on
        log(f"cleanup: Redis keys {prefix}*: {exc}")


def run(args: argparse.Namespace, lab: Lab, guests: dict[str, dict]) -> dict:
    conn = lab.conns["a"]
    out: dict = {"repeat": args.repeat, "cores": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2),
                 "libvirt": conn.getLibVersion(), "qemu": conn.getVersion()}
    breakdown: dict[str, dict] = {}
    for name, what in guests.items():
        storage = what["storage"]
        key = storage.replace("-", "_")
        info = conn.storageVolLookupByPath(str(what["disk"])).info() if storage != "shared" else None
        base = conn.storageVolLookupByPath(str(lab.hosts.a.pool_dir / "wvm-base.qcow2")).info()
        boot(lab, name, what["disk"])
        size = (f"a {info[1] // MIB} MiB disk, {info[2] // MIB} MiB allocated in its overlay and {base[2] // MIB} MiB "
                f"in its base" if info else "its disk shared")
        log(f"{key}: {name} ({size}), webvirt and virsh there and back, {args.repeat} times…")
        ours, theirs = ping_pong(lab, name, storage, args.repeat)
        mine, virsh = summary(ours), summary(theirs)
        out[f"{key}_s"] = mine["total"]
        out[f"{key}_downtime_ms"] = mine.get("downtime_ms")
        out[f"virsh_{key}_s"] = virsh["total"]
        out[f"virsh_{key}_downtime_ms"] = virsh.get("downtime_ms")
        out[f"{key}_overhead_s"] = round(mine["total"] - virsh["total"], 3)
        breakdown[key] = {k: v for k, v in mine.items() if k not in ("total", "downtime_ms")}
        breakdown[key]["virsh_libvirt_job_ms"] = virsh.get("libvirt_job_ms")
        if info:  # what the first move copies: copy_all the whole chain, copy_inc the overlay
            out[f"{key}_disk_mib"] = info[1] // MIB
            out[f"{key}_data_mib"] = (info[2] + (base[2] if storage == "copy-all" else 0)) // MIB
        if name != "wvm-big":
            lab.conns["a"].lookupByName(name).destroy()  # one guest runs at a time
    log(f"cancel: wvm-big, copy_all at {args.cancel_bandwidth} MiB/s, cancelled once data moves, "
        f"{args.repeat} times…")
    cancels, left = cancel_runs(lab, "wvm-big", args.repeat, args.cancel_bandwidth)
    out["cancel_s"] = stat(cancels)
    out["cancel_left"] = left
    out["breakdown"] = breakdown
    overheads = {k: out[f"{k}_overhead_s"] for k in ("shared", "copy_all", "copy_inc")}
    out["goals"] = {
        "shared_within_2s": out["shared_s"] <= GOALS["shared_s"],
        "shared_downtime_within_300ms": (out["shared_downtime_ms"] or 10**9) <= GOALS["downtime_ms"],
        "copy_all_64mib_within_5s": out["copy_all_s"] <= GOALS["copy_all_s"],
        "copy_inc_within_5s": out["copy_inc_s"] <= GOALS["copy_inc_s"],
        "cancel_within_2s": out["cancel_s"] <= GOALS["cancel_s"],
        "cancel_leaves_nothing": not left,
        "over_virsh_under_1s": all(v < GOALS["overhead_s"] for v in overheads.values()),
    }
    return out


if __name__ == "__main__":
    sys.exit(main())
