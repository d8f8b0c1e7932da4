#!/usr/bin/env python3
"""How long a change made outside webvirt takes to reach the browsers watching: libvirt to WebSocket.

    .venv/bin/python bench/events_latency.py [--changes 200] [--clients 1,50,200] [--qemu-cycles 50]

What it does, on a state of its own (a temporary WEBVIRT_STATE_DIR; SQLite in it unless
--database-url is given; a Redis key prefix of its own):

1. runs `manage.py migrate`, creates an administrator and an API token;
2. starts the web process (uvicorn, as in the Procfile) and one event watcher (`manage.py watch`);
3. registers `test+unix:///default` (and `qemu:///system` if it answers) through the API;
4. defines and starts a test-driver domain on a libvirt connection of its own, then, for each client
   count (1, 50, 200 by default), opens that many `/ws/events/` sockets (one asyncio process, the
   `websockets` library, token authentication) and alternately suspends and resumes the domain
   (--changes times). Each change is timed from just before the libvirt call until each client
   receives the matching event; the next change waits until every client has it (or --timeout);
5. if the tiny guest image exists (tests/guest) and qemu:///system answers: boots one emulated
   guest and times --qemu-cycles suspend/resume cycles with one client;
6. stops the watcher with SIGTERM.

Latency is per client and event: median, p99 and max in milliseconds; events that never arrived
are counted as lost. Goals: p99 < 100 ms with 1 client, < 250 ms with 200 clients.
Progress goes to stderr; the last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    Client,
    Server,
    Watcher,
    bench_env,
    fail,
    keep_or_remove,
    log,
    manage,
    median,
    percentile,
    prepare_database,
)

TEST_URI = "test+unix:///default"
QEMU_URI = "qemu:///system"
GOALS_P99_MS = {1: 100.0, 200: 250.0}

# libvirt prints its errors to stderr by default; the script reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def test_domain_xml(name: str, dom_uuid: str) -> str:
    return (f"<domain type='test'><name>{name}</name><uuid>{dom_uuid}</uuid><memory unit='MiB'>128</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>")


# Timing one series of changes --------------------------------------------------------------------

@dataclass
class Series:
    """What the clients saw of one series of changes."""

    clients: int
    changes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0

    def summary(self) -> dict:
        values = self.latencies_ms
        return {"clients": self.clients, "changes": self.changes, "events_expected": self.clients * self.changes,
                "events_received": len(values), "lost": self.lost, "duplicates": self.duplicates,
                "median_ms": round(median(values), 1) if values else None,
                "p99_ms": round(percentile(values, 0.99), 1) if values else None,
                "max_ms": round(max(values), 1) if values else None}


class Expectation:
    """The change the clients are waiting for now, and who has seen it."""

    def __init__(self, dom_uuid: str, clients: int) -> None:
        self.uuid, self.clients = dom_uuid, clients
        self.index, self.state = -1, ""
        self.arrived: dict[int, float] = {}
        self.all_arrived = asyncio.Event()
        self.duplicates = 0

    def expect(self, index: int, state: str) -> None:
        self.index, self.state, self.arrived = index, state, {}
        self.all_arrived.clear()

    def received(self, client: int, event: dict, at: float) -> None:
        if event.get("uuid") != self.uuid or event.get("state") != self.state:
            return
        if client in self.arrived:
            self.duplicates += 1
            return
        self.arrived[client] = at
        if len(self.arrived) == self.clients:
            self.all_arrived.set()


async def open_clients(ws_url: str, token: str, count: int) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    for start in range(0, count, 50):  # In batches, so the server is not flooded with handshakes.
        batch = await asyncio.gather(*(
            connect(f"{ws_url}/ws/events/", additional_headers={"Authorization": f"Token {token}"}, open_timeout=30)
            for _ in range(min(50, count - start))))
        for ws in batch:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                fail(f"the socket did not greet: {hello}")
        sockets += batch
    return sockets


async def read_events(client: int, ws: ClientConnection, expectation: Expectation) -> None:
    with contextlib.suppress(Exception):
        async for message in ws:
            at = time.perf_counter()
            expectation.received(client, json.loads(message), at)


async def run_series(ws_url: str, token: str, dom_uuid: str, change: Callable[[str], float], states: list[str],
                     clients: int, changes: int, timeout: float) -> Series:
    """Open `clients` sockets, make `changes` changes (cycling through `states`), time every arrival."""
    sockets = await open_clients(ws_url, token, clients)
    expectation = Expectation(dom_uuid, clients)
    readers = [asyncio.create_task(read_events(i, ws, expectation)) for i, ws in enumerate(sockets)]
    series = Series(clients)
    loop = asyncio.get_running_loop()
    try:
        for index in range(changes):
            state = states[index % len(states)]
            expectation.expect(index, state)
            started = await loop.run_in_executor(None, change, state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(expectation.all_arrived.wait(), timeout)
            series.changes += 1
            series.lost += clients - len(expectation.arrived)
            series.latencies_ms += [(at - started) * 1000 for at in expectation.arrived.values()]
            if index % 50 == 49:
                log(f"  {clients} client(s): {index + 1} changes")
        await asyncio.sleep(0.2)  # Late duplicates of the last change.
        series.duplicates = expectation.duplicates
    finally:
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return series


def lifecycle_change(dom: libvirt.virDomain) -> Callable[[str], float]:
    """A function that suspends or resumes `dom` and returns the time taken just before the call."""

    def change(state: str) -> float:
        call = dom.suspend if state == "paused" else dom.resume
        started = time.perf_counter()
        call()
        return started

    return change


async def wait_for_state(ws_url: str, token: str, dom_uuid: str, state: str, action: Callable[[], object],
                         timeout: float = 30) -> None:
    """Run `action` and wait until the socket reports `dom_uuid` in `state` (the cache is then current)."""
    async with connect(f"{ws_url}/ws/events/", additional_headers={"Authorization": f"Token {token}"}) as ws:
        await ws.recv()
        await asyncio.get_running_loop().run_in_executor(None, action)
        async with asyncio.timeout(timeout):
            async for message in ws:
                event = json.loads(message)
                if event.get("uuid") == dom_uuid and event.get("state") == state:
                    return


# The real guest ----------------------------------------------------------------------------------

def qemu_guest_series(ws_url: str, token: str, conn: libvirt.virConnect, cycles: int, timeout: float) -> dict | None:
    sys.path.insert(0, str(ROOT))
    from tests.guest import guest

    if not guest.GUEST_IMAGE.exists():
        log(f"no tiny guest image at {guest.GUEST_IMAGE}: skipping the QEMU guest (build it with tests/guest/build.sh)")
        return None
    workdir = Path(tempfile.mkdtemp(prefix="webvirt-bench-guest-"))
    os.chmod(workdir, 0o755)  # qemu runs as another user
    name, dom_uuid = f"bench-ev-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    dom = None
    try:
        overlay = guest.make_overlay(guest.ensure_image(), workdir / f"{name}.qcow2")
        dom = conn.defineXML(guest.tiny_domain_xml(name, str(overlay), uuid=dom_uuid, vnc=False))
        asyncio.run(wait_for_state(ws_url, token, dom_uuid, "running", dom.create))
        log(f"QEMU guest {name} is running; {cycles} suspend/resume cycles with 1 client")
        series = asyncio.run(run_series(ws_url, token, dom_uuid, lifecycle_change(dom), ["paused", "running"],
                                        1, cycles * 2, timeout))
        return series.summary()
    finally:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        shutil.rmtree(workdir, ignore_errors=True)


# The run -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="use this database (it is flushed) instead of a temporary SQLite")
    parser.add_argument("--force", action="store_true", help="allow a --database-url whose name lacks 'bench'")
    parser.add_argument("--changes", type=int, default=200, help="changes per client count (default 200)")
    parser.add_argument("--clients", default="1,50,200", help="client counts, comma-separated (default 1,50,200)")
    parser.add_argument("--qemu-cycles", type=int, default=50, help="suspend/resume cycles of a real guest; 0: none")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each event (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (and the database's data)")
    args = parser.parse_args()
    if args.database_url:
        name = urlsplit(args.database_url).path.lstrip("/")
        if "bench" not in name and not args.force:
            parser.error(f"the database '{name}' is emptied by this benchmark; use one named *bench* or --force")

    tmp = Path(tempfile.mkdtemp(prefix="webvirt-bench-"))
    env = bench_env(tmp / "state", args.database_url)
    server = Server(env, tmp / "server.log")
    watcher = Watcher(env, tmp / "watcher.log")
    try:
        result = run(args, env, server, watcher)
    finally:
        server.stop()
        watcher.stop()
        if args.database_url and not args.keep:
            with contextlib.suppress(SystemExit):
                manage(env, "flush", "--noinput")
        keep_or_remove(tmp, args.keep)
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace, env: dict[str, str], server: Server, watcher: Watcher) -> dict:
    log(f"migrating a fresh {'PostgreSQL' if args.database_url else 'SQLite'} database")
    token = prepare_database(env, flush=bool(args.database_url))
    server.start()
    watcher.start()
    ws_url = f"ws://127.0.0.1:{server.port}"
    log(f"uvicorn answers on 127.0.0.1:{server.port}; the watcher is starting")

    # Our own connection keeps the shared test driver's state alive and makes the changes.
    test_conn = libvirt.open(TEST_URI)
    name, dom_uuid = f"bench-ev-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    dom = test_conn.defineXML(test_domain_xml(name, dom_uuid))
    try:
        api = Client(server.port, token)
        api.json("POST", "/api/v1/hosts/", {"name": "test-default", "uri": TEST_URI}, expect=201)
        qemu_conn = None
        with contextlib.suppress(libvirt.libvirtError):
            qemu_conn = libvirt.open(QEMU_URI)
        if qemu_conn is not None:
            api.json("POST", "/api/v1/hosts/", {"name": "qemu-system", "uri": QEMU_URI}, expect=201)
        api.close()
        watcher.wait_for_log("resynchronised", count=2 if qemu_conn is not None else 1)
        log(f"registered {TEST_URI}" + (f" and {QEMU_URI}" if qemu_conn is not None else "")
            + "; the watcher holds them")

        asyncio.run(wait_for_state(ws_url, token, dom_uuid, "running", dom.create))
        series = []
        for clients in [int(c) for c in args.clients.split(",")]:
            log(f"{clients} client(s), {args.changes} changes (suspend/resume of test-driver domain {name})")
            figures = asyncio.run(run_series(ws_url, token, dom_uuid, lifecycle_change(dom), ["paused", "running"],
                                             clients, args.changes, args.timeout)).summary()
            log(f"  median {figures['median_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms, "
                f"{figures['lost']} lost, {figures['duplicates']} duplicates")
            series.append(figures)

        qemu = None
        if qemu_conn is not None and args.qemu_cycles > 0:
            qemu = qemu_guest_series(ws_url, token, qemu_conn, args.qemu_cycles, args.timeout)
            if qemu:
                log(f"QEMU guest: median {qemu['median_ms']} ms, p99 {qemu['p99_ms']} ms, {qemu['lost']} lost")
        if qemu_conn is not None:
            qemu_conn.close()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()
        test_conn.close()

    code, seconds = watcher.stop()
    log(f"the watcher stopped on SIGTERM in {seconds} s (exit code {code})")
    goals = {}
    for figures in series:
        goal = GOALS_P99_MS.get(figures["clients"])
        if goal is not None:
            goals[str(figures["clients"])] = {"p99_goal_ms": goal, "p99_ms": figures["p99_ms"],
                                              "met": figures["p99_ms"] is not None and figures["p99_ms"] < goal}
    return {"database": "postgresql" if args.database_url else "sqlite", "changes": args.changes,
            "test_driver": series, "qemu_guest": qemu, "lost": sum(f["lost"] for f in series),
            "goals": goals, "goal_met": bool(goals) and all(g["met"] for g in goals.values())
            and not any(f["lost"] for f in series),
            "watcher_stop_exit_code": code, "watcher_stop_seconds": seconds}


if __name__ == "__main__":
    sys.exit(main())
