#!/usr/bin/env python3
"""How fast 20 clones of a template run: linked and full clones through webvirt, and virt-clone.

    .venv/bin/python bench/clone.py [--count 20] [--disk-gib 1] [--phases linked,seeded,full,virt-clone]

On real QEMU (qemu:///system, domain type 'qemu': emulation), with the tiny test guest as the
template, its disk grown so that it holds --disk-gib GiB of data (written past the boot filesystem,
so it still boots). Everything runs on a state of its own: a temporary WEBVIRT_STATE_DIR with its
own SQLite database, its own Redis key prefix (and so its own job queue), its own web server
(uvicorn), Celery worker and event watcher, and a temporary directory pool; all of it is removed
at the end, also when the run fails.

Phases, each cleaned up before the next:
1. linked: `POST /api/v1/templates/<id>/clone/` with count=20, mode=linked, start=true; the time
   from that request until libvirt reports all 20 running, and until every guest has printed its
   boot marker on its serial port;
2. seeded: the same linked clones of the same template with cloud-init turned on: each clone also
   gets its own NoCloud seed (built, uploaded as a volume and attached as a CD-ROM) carrying the
   owner's two SSH keys; `seed_overhead_pct` compares it with phase 1 (goal: under 5% slower);
3. full: the same with mode=full (libvirt copies the disk for each clone);
4. virt-clone: `virt-clone --auto-clone --original <domain> --name ...` 20 times, one after
   another, then each started in turn; the time until all 20 run (and until all booted). Its
   original is a plain shut-off domain on the same disk, since virt-clone would not copy the
   template's read-only disk.

The clone job's log and when each guest was defined, started and resumed are printed to stderr,
to show where the time goes. Progress goes to stderr; the last line of stdout is one JSON object.
Run it when the machine is otherwise idle (`uptime`): 20 emulated guests need both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
import uuid
from pathlib import Path

import libvirt
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import Api, Processes, bench_env, free_port, keep_or_remove, log, manage, wait_for_web  # noqa: E402  (bench/ is on sys.path)

from tests.guest.guest import READY_MARKER, ensure_image, tiny_domain_xml  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
URI = "qemu:///system"
ADMIN = "benchadmin"
GOAL_LINKED_S = 15.0
GOAL_SPEEDUP = 10.0
GOAL_SEED_OVERHEAD_PCT = 5.0
CLOUD_CONFIG = "#cloud-config\npackage_update: false\nruncmd:\n  - [sh, -c, 'echo seeded > /dev/ttyS0']\n"


# Guests ------------------------------------------------------------------------------------------

def make_disk(image: Path, dest: Path, data_gib: float) -> None:
    """The tiny guest's disk, grown by `data_gib` GiB and that much data written past its filesystem."""
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(image), str(dest)], check=True)
    virtual = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(dest)], check=True,
                                        capture_output=True, text=True).stdout)["virtual-size"]
    size = int(data_gib * 1024**3) // (1024**2) * 1024**2  # whole MiB
    subprocess.run(["qemu-img", "resize", "-q", str(dest), str(virtual + size)], check=True)
    step = 256 * 1024**2
    writes = []
    for offset in range(0, size, step):
        writes += ["-c", f"write -q -P 0x5a {virtual + offset} {min(step, size - offset)}"]
    subprocess.run(["qemu-io", "-f", "qcow2", *writes, str(dest)], check=True)


class Watch(threading.Thread):
    """Follows a set of domains in libvirt: when each is defined, active, running, and booted (the
    ready marker on its serial port, read from the host side of its pty)."""

    def __init__(self, names: list[str], t0: float) -> None:
        super().__init__(daemon=True)
        self.names, self.t0 = names, t0
        self.conn = libvirt.open(URI)
        self.times: dict[str, dict[str, float]] = {n: {} for n in names}
        self.ptys: dict[int, tuple[str, bytearray]] = {}
        self.stop = threading.Event()

    def seen(self, name: str, what: str) -> None:
        self.times[name].setdefault(what, round(time.monotonic() - self.t0, 2))

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.conn.isAlive():  # libvirtd was restarted by other work: the guests live on
                self.conn = open_libvirt()
            self.poll_domains()
            self.read_ptys(0.1)
        for fd in self.ptys:
            os.close(fd)
        self.conn.close()

    def poll_domains(self) -> None:
        for name in self.names:
            t = self.times[name]
            if "running" in t and "pty" in t:
                continue
            try:
                dom = self.conn.lookupByName(name)
                state = dom.state()[0]
            except libvirt.libvirtError:
                continue
            self.seen(name, "defined")
            if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED):
                self.seen(name, "active")
                if "pty" not in t:
                    self.open_pty(name, dom)
            if state == libvirt.VIR_DOMAIN_RUNNING:
                self.seen(name, "running")

    def open_pty(self, name: str, dom: libvirt.virDomain) -> None:
        try:
            paths = etree.fromstring(dom.XMLDesc(0).encode()).xpath("./devices/serial[@type='pty']/source/@path")
        except libvirt.libvirtError:
            return
        if paths:
            fd = os.open(paths[0], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(fd, termios.TCSANOW)
            self.ptys[fd] = (name, bytearray())
            self.seen(name, "pty")

    def read_ptys(self, timeout: float) -> None:
        waiting = [fd for fd, (name, _buf) in self.ptys.items() if "booted" not in self.times[name]]
        if not waiting:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(waiting, [], [], timeout)
        for fd in ready:
            name, buf = self.ptys[fd]
            try:
                buf += os.read(fd, 65536)
            except OSError:
                continue
            if READY_MARKER.encode() in buf:
                self.seen(name, "booted")

    def all(self, what: str) -> bool:
        return all(what in t for t in self.times.values())

    def last(self, what: str) -> float | None:
        values = [t.get(what) for t in self.times.values()]
        return None if any(v is None for v in values) else max(values)  # type: ignore[type-var]

    def wait(self, what: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while not self.all(what) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.last(what)

    def summary(self) -> str:
        parts = []
        for what in ("defined", "active", "running", "booted"):
            values = sorted(t[what] for t in self.times.values() if what in t)
            if values:
                parts.append(f"{what} {values[0]:.1f}-{values[-1]:.1f} s ({len(values)})")
        return "; ".join(parts)


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


def remove_domains(prefix: str, pool_name: str, keep: set[str]) -> None:
    """Force off and undefine every domain named `prefix…`, and delete the pool's volumes but `keep`.

    On a connection of its own: libvirtd may have been restarted (by other work) since the run began.
    """
    conn = open_libvirt()
    pool = conn.storagePoolLookupByName(pool_name)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError as exc:
                log(f"could not remove {dom.name()}: {exc}")
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if vol.name() not in keep:
            vol.delete(0)
    conn.close()


# Phases ------------------------------------------------------------------------------------------

def clone_phase(api: Api, template: int, mode: str, count: int, prefix: str, boot_timeout: float) -> dict:
    names = [f"{prefix}{n:02}" for n in range(1, count + 1)]
    t0 = time.monotonic()
    watch = Watch(names, t0)
    watch.start()
    job_id = api.call("POST", f"/api/v1/templates/{template}/clone/", {
        "count": count, "name_pattern": prefix + "{n:02}", "mode": mode, "start": True}, expect=202)["job"]
    accepted = time.monotonic() - t0
    running = watch.wait("running", 600)
    job = api.wait_job(job_id, 900)
    booted = watch.wait("booted", boot_timeout)
    watch.stop.set()
    watch.join(5)
    log(f"{mode}: request accepted in {accepted:.2f} s; job {job['state']} after {job['duration']:.1f} s: "
        f"{job['message']}")
    log(f"{mode}: {watch.summary()}")
    for line in job["log"][-8:]:
        log(f"{mode}:   job log: {line}")
    if job["state"] != "succeeded" or running is None:
        raise SystemExit(f"clone: the {mode} clone job did not make {count} running clones: {job['error']}")
    missing = [n for n, t in watch.times.items() if "booted" not in t]
    if missing:
        log(f"{mode}: {len(missing)} guest(s) printed no boot marker within {boot_timeout:g} s: {', '.join(missing)}")
    return {"all_running_s": round(running, 2), "all_booted_s": booted, "job_s": round(job["duration"], 2),
            "all_defined_s": watch.last("defined"), "all_started_s": watch.last("active"),
            "not_booted": len(missing)}




def virt_clone_phase(conn: libvirt.virConnect, original: str, count: int, prefix: str, boot_timeout: float) -> dict:
    names = [f"{prefix}{n:02}" for n in range(1, count + 1)]
    t0 = time.monotonic()
    watch = Watch(names, t0)
    watch.start()
    for name in names:
        subprocess.run(["virt-clone", "--connect", URI, "--original", original, "--name", name, "--auto-clone"],
                       check=True, capture_output=True, text=True)
    cloned = time.monotonic() - t0
    log(f"virt-clone: {count} copies defined after {cloned:.1f} s")
    for name in names:
        conn.lookupByName(name).create()
    running = watch.wait("running", 120)
    booted = watch.wait("booted", boot_timeout)
    watch.stop.set()
    watch.join(5)
    log(f"virt-clone: {watch.summary()}")
    return {"all_running_s": round(running or 0, 2), "all_booted_s": booted, "all_defined_s": round(cloned, 2),
            "not_booted": sum(1 for t in watch.times.values() if "booted" not in t)}


def give_seeds(api: Api, template: int) -> None:
    """Turn cloud-init on for the template, and give the benchmark's user (every clone's owner) two keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    for n in (1, 2):
        key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        api.call("POST", "/api/v1/me/ssh-keys/", {"name": f"bench key {n}", "public_key": key}, expect=201)
    api.call("PATCH", f"/api/v1/templates/{template}/", {"cloud_init": {"enabled": True, "user_data": CLOUD_CONFIG}},
             expect=200)


# The run -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--disk-gib", type=float, default=1.0, help="data written into the template's disk")
    parser.add_argument("--phases", default="linked,seeded,full,virt-clone")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--boot-timeout", type=float, default=240)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if "virt-clone" in phases and not shutil.which("virt-clone"):
        parser.error("virt-clone is missing: apt-get install virtinst (scripts/setup.sh installs it)")

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # lookups of not-yet-defined clones fail quietly
    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-clone-"))
    os.chmod(tmp, 0o755)  # qemu (user libvirt-qemu) must reach the pool inside it
    env = bench_env(tmp / "state", None)
    procs = Processes(env, tmp)
    conn = libvirt.open(URI)
    tag = uuid.uuid4().hex[:6]
    prefix = f"wvb{tag}-"
    pool = None
    try:
        (tmp / "pool").mkdir(mode=0o755)
        pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>webvirt-bench-{tag}</name><target>"
                                         f"<path>{tmp / 'pool'}</path></target></pool>", 0)
        result = run(args, phases, tmp, env, procs, conn, pool, prefix)
    finally:
        procs.stop()
        if pool is not None:
            remove_domains(prefix, pool.name(), keep=set())
            fresh = open_libvirt()
            fresh.storagePoolLookupByName(pool.name()).destroy()
            fresh.close()
        keep_or_remove(tmp, args.keep)
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, phases: list[str], tmp: Path, env: dict[str, str], procs: Processes,
        conn: libvirt.virConnect, pool: libvirt.virStoragePool, prefix: str) -> dict:
    base = tmp / "pool" / f"{prefix}base.qcow2"
    log(f"writing the template's disk: the tiny guest plus {args.disk_gib:g} GiB of data")
    make_disk(ensure_image(), base, args.disk_gib)
    pool.refresh(0)
    allocated = pool.storageVolLookupByName(base.name).info()[2]
    log(f"{base.name}: {allocated / 1024**3:.2f} GiB allocated")

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
    host = api.call("POST", "/api/v1/hosts/", {"name": "local qemu", "uri": URI}, expect=201)["id"]
    source = api.call("POST", "/api/v1/domains/", {"host": host, "xml": tiny_domain_xml(
        f"{prefix}template", str(base), vnc=False)}, expect=201)["id"]
    template = api.call("POST", "/api/v1/templates/", {"domain": source, "name": "bench template"},
                        expect=201)["id"]
    time.sleep(3)  # let the watcher's first resynchronisation of the host pass
    keep = {base.name}
    out: dict = {"count": args.count, "template_allocated_gib": round(allocated / 1024**3, 2),
                 "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}

    for phase in ("linked", "seeded", "full"):
        if phase not in phases:
            continue
        mode = "full" if phase == "full" else "linked"
        if phase == "seeded":
            give_seeds(api, template)
        log(f"{phase}: {args.count} {mode} clones through the API…")
        figures = clone_phase(api, template, mode, args.count, f"{prefix}{phase[0]}", args.boot_timeout)
        log(f"{phase}: all running after {figures['all_running_s']} s, all booted after {figures['all_booted_s']} s")
        out.update({f"{phase}_{k}": v for k, v in figures.items()})
        if phase == "seeded":
            api.call("PATCH", f"/api/v1/templates/{template}/", {"cloud_init": {"enabled": False}}, expect=200)
        remove_domains(f"{prefix}{phase[0]}", pool.name(), keep)
        time.sleep(2)

    if "virt-clone" in phases:
        original = f"{prefix}orig"
        conn = libvirt.open(URI)
        conn.defineXML(tiny_domain_xml(original, str(base), vnc=False))
        log(f"virt-clone: {args.count} copies one after another, then started one after another…")
        figures = virt_clone_phase(conn, original, args.count, f"{prefix}v", args.boot_timeout)
        log(f"virt-clone: all running after {figures['all_running_s']} s, all booted after "
            f"{figures['all_booted_s']} s")
        out.update({f"virt_clone_{k}": v for k, v in figures.items()})
        remove_domains(f"{prefix}v", pool.name(), keep)

    linked, full, vc = (out.get("linked_all_running_s"), out.get("full_all_running_s"),
                        out.get("virt_clone_all_running_s"))
    seeded = out.get("seeded_all_running_s")
    out["speedup"] = round(vc / linked, 1) if linked and vc else None
    out["seed_overhead_pct"] = round(100 * (seeded - linked) / linked, 1) if linked and seeded else None
    out["goals"] = {
        "linked_running_within_15s": linked is not None and linked <= GOAL_LINKED_S,
        "linked_10x_faster_than_virt_clone": out["speedup"] is not None and out["speedup"] >= GOAL_SPEEDUP,
        "full_no_slower_than_virt_clone": full is not None and vc is not None and full <= vc,
        "seeds_under_5pct_slower": out["seed_overhead_pct"] is not None
        and out["seed_overhead_pct"] < GOAL_SEED_OVERHEAD_PCT,
    }
    return out


if __name__ == "__main__":
    sys.exit(main())
