"""Console proxy benchmark: direct TCP vs webvirt's /ws/console/vnc/ proxy vs websockify, on this machine.

A synthetic RFB-speaking server (its own process) greets like RFB 3.8 and then either streams a fixed
number of bytes ('T' + u64) or echoes ('E'). The script starts, on 127.0.0.1 only:
- that server; webvirt's web process (uvicorn, as in the Procfile) on a scratch SQLite database with
  a test-driver domain whose VNC port is the synthetic server; websockify 0.13 pointing at the server.
It measures server-to-client throughput (MB/s), echo round trips (median, p99) and 50 concurrent
console sessions through webvirt (every byte must arrive). The last line is one JSON object.

    .venv/bin/python bench/console_proxy.py [--mib 256] [--pings 2000] [--sessions 50] [--session-mib 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GREETING = b"RFB 003.008\n"
BLOCK = b"\x5a" * 65536


# The synthetic VNC server (runs in its own process) ---------------------------------------------

async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.get_extra_info("socket").setsockopt(6, 1, 1)  # TCP_NODELAY
    writer.write(GREETING)
    try:
        command = await reader.readexactly(1)
        if command == b"T":
            (left,) = struct.unpack(">Q", await reader.readexactly(8))
            while left > 0:
                chunk = BLOCK[: min(left, len(BLOCK))]
                writer.write(chunk)
                left -= len(chunk)
                await writer.drain()
            await reader.read(1)  # wait for the client to hang up
        else:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(serve_client, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


# Clients ---------------------------------------------------------------------------------------

class Tcp:
    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        self.writer.transport.get_extra_info("socket").setsockopt(6, 1, 1)
        assert await self.reader.readexactly(12) == GREETING

    async def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> bytes:
        data = await self.reader.read(1 << 20)
        if not data:
            raise ConnectionError("closed")
        return data

    async def close(self) -> None:
        self.writer.close()


class Ws:
    def __init__(self, url_factory) -> None:  # type: ignore[no-untyped-def]
        self.url_factory = url_factory

    async def open(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url_factory(), max_size=None, compression=None,
                                           subprotocols=["binary"], additional_headers=HEADERS)
        got = b""
        while len(got) < 12:
            got += await self.ws.recv()
        assert got[:12] == GREETING, got[:20]
        self.pending = got[12:]

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return await self.ws.recv()

    async def close(self) -> None:
        await self.ws.close()


HEADERS: dict[str, str] = {}


async def throughput(client, size: int) -> float:  # type: ignore[no-untyped-def]
    await client.open()
    started = time.perf_counter()
    await client.send(b"T" + struct.pack(">Q", size))
    got = 0
    while got < size:
        got += len(await client.recv())
    elapsed = time.perf_counter() - started
    await client.close()
    return size / elapsed / 1e6


async def round_trips(client, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    await client.open()
    await client.send(b"E")
    times = []
    message = b"p" * 16
    for _ in range(count + 50):
        started = time.perf_counter()
        await client.send(message)
        got = b""
        while len(got) < len(message):
            got += await client.recv()
        times.append((time.perf_counter() - started) * 1e6)
    await client.close()
    return times[50:]  # the first ones warm up caches and the event loops


async def many_sessions(factory, sessions: int, size: int) -> dict:  # type: ignore[no-untyped-def]
    async def one() -> int:
        client = factory()
        await client.open()
        await client.send(b"T" + struct.pack(">Q", size))
        got = 0
        while got < size:
            got += len(await client.recv())
        await client.close()
        return got

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(sessions)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    complete = sum(1 for r in results if r == size)
    return {"sessions": sessions, "complete": complete, "dropped": sessions - complete,
            "mib_each": size // (1 << 20), "total_mb_s": round(complete * size / elapsed / 1e6, 1),
            "seconds": round(elapsed, 2), "errors": sorted({repr(r)[:120] for r in results if r != size})}


# Setting up webvirt and websockify --------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("a server of the benchmark exited early") from None
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wait_port(port: int, timeout: float = 15) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def prepare_webvirt(env: dict[str, str], vnc_port: int) -> tuple[str, int, object]:
    """Scratch database with an admin, a token, the test driver as a host and a domain whose VNC is ours."""
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import libvirt
    from django.contrib.auth import get_user_model

    from webvirt.accounts.tokens import create_token
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host
    from webvirt.hosts.models import Host

    conn = libvirt.open("test+unix:///default")  # held open: the test driver keeps state only meanwhile
    name = f"bench-console-{uuid.uuid4().hex[:6]}"
    dom = conn.defineXML(f"""<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='i686'>hvm</type></os>
      <devices><graphics type='vnc' port='{vnc_port}' autoport='no' listen='127.0.0.1'/></devices></domain>""")
    dom.create()
    user = get_user_model().objects.create_superuser("bench", "", "bench-password-1")
    token = create_token(user, name="bench")[1]
    host = Host.objects.create(name="test driver", uri="test+unix:///default", status=Host.ONLINE)
    sync_host(host)
    pk = Domain.objects.get(host=host, uuid=dom.UUIDString()).pk
    return token, pk, (conn, dom)


def ticket_url(base: str, token: str, pk: int) -> str:
    request = urllib.request.Request(f"{base}/api/v1/domains/{pk}/console/", data=b'{"kind": "vnc"}', method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return base.replace("http://", "ws://") + json.loads(response.read())["path"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, default=256, help="bytes streamed per throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--session-mib", type=int, default=8)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return

    # Stopped from outside (SIGTERM, Ctrl-C), it still stops the servers it started (see finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="webvirt-bench-"))
    vnc_port, web_port, wsk_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}", "WEBVIRT_STATE_DIR": str(work),
           "WEBVIRT_REDIS_PREFIX": f"webvirt-bench-{os.getpid()}", "DJANGO_SETTINGS_MODULE": "webvirt.settings",
           "WEBVIRT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    if not env.get("REDIS_URL") and (ROOT / ".state/redis.sock").exists():
        env["REDIS_URL"] = f"unix://{ROOT / '.state/redis.sock'}"
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        procs.append(proc)
        return proc

    try:
        start([sys.executable, __file__, "--serve", str(vnc_port)])
        token, pk, _keep = prepare_webvirt(env, vnc_port)
        HEADERS["Authorization"] = f"Token {token}"
        web = start([str(ROOT / ".venv/bin/uvicorn"), "webvirt.asgi:application", "--host", "127.0.0.1",
                     "--port", str(web_port), "--ws", "websockets", "--ws-per-message-deflate", "false",
                     "--log-level", "warning"])
        start([sys.executable, "-m", "websockify", "--log-file", "/dev/null", f"127.0.0.1:{wsk_port}",
               f"127.0.0.1:{vnc_port}"])
        base = f"http://127.0.0.1:{web_port}"
        wait_port(vnc_port)
        wait_http(f"{base}/accounts/login/", web)
        wait_port(wsk_port)
        results = asyncio.run(measure(args, vnc_port, base, token, pk, wsk_port))
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(10)
        if "_keep" in locals():
            conn, dom = _keep  # type: ignore[misc]
            dom.destroy()
            dom.undefine()
            conn.close()
    print(json.dumps(results))


async def measure(args, vnc_port: int, base: str, token: str,  # type: ignore[no-untyped-def]
                  pk: int, wsk_port: int) -> dict:
    size = args.mib << 20
    routes = {
        "direct": lambda: Tcp(vnc_port),
        "webvirt": lambda: Ws(lambda: ticket_url(base, token, pk)),
        "websockify": lambda: Ws(lambda: f"ws://127.0.0.1:{wsk_port}/"),
    }
    results: dict = {"bench": "console_proxy", "mib_per_run": args.mib, "runs": args.runs,
                     "client": "python websockets"}
    for name, factory in routes.items():
        rates = [await throughput(factory(), size) for _ in range(args.runs)]
        rtts = await round_trips(factory(), args.pings)
        results[name] = {"mb_s": round(statistics.median(rates), 1), "mb_s_runs": [round(r, 1) for r in rates],
                         "rtt_us_median": round(statistics.median(rtts), 1),
                         "rtt_us_p99": round(sorted(rtts)[int(len(rtts) * 0.99)], 1)}
        print(name, results[name], file=sys.stderr)
    for name in ("webvirt", "websockify"):
        added = results[name]["rtt_us_median"] - results["direct"]["rtt_us_median"]
        results[name]["added_rtt_us_median"] = round(added, 1)
    results["concurrent_webvirt"] = await many_sessions(routes["webvirt"], args.sessions, args.session_mib << 20)
    print("concurrent", results["concurrent_webvirt"], file=sys.stderr)
    results["goals"] = {
        "throughput_at_least_websockify": results["webvirt"]["mb_s"] >= results["websockify"]["mb_s"],
        "added_rtt_under_1ms": results["webvirt"]["added_rtt_us_median"] < 1000,
        "concurrent_no_drops": results["concurrent_webvirt"]["dropped"] == 0,
    }
    return results


if __name__ == "__main__":
    main()
