"""The event watcher: one asyncio process holding a libvirt connection per host.

It receives libvirt's events (through libvirt-python's asyncio event implementation), keeps the
state cache right, marks hosts online or offline, and publishes every change to the channel layer.
Each host is held by one watcher at a time through a Redis lease, so several may run.

libvirt calls are blocking: each one runs in a thread pool, never on the event loop, so one slow
or dead host never delays the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import libvirt
import libvirtaio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from webvirt.domains import services as domain_services
from webvirt.domains.models import Domain
from webvirt.events import publish
from webvirt.events.leases import Leases
from webvirt.hosts.models import Host
from webvirt.metrics import store
from webvirt.virt import domains as virt_domains
from webvirt.virt import stats
from webvirt.virt.connection import ConnectionManager, event_loop
from webvirt.virt.errors import VirtError

log = logging.getLogger("webvirt.watcher")
T = TypeVar("T")

OPEN_TIMEOUT = 5.0
PING_INTERVAL = 3.0  # A ping every 3 s that must answer within 4 s flags a dead host within 10 s.
PING_TIMEOUT = 4.0
SYNC_TIMEOUT = 30.0
BACKOFF_MAX = 3.0  # Short, so a host that comes back is online again within 5 s.
CLOSE_TIMEOUT = 2.0  # How long a stopping watcher waits for its connections to close.
HOSTS_POLL = 2.0  # How often the host table is re-read (hosts added or removed while running).

DOMAIN_EVENTS = [
    libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
    libvirt.VIR_DOMAIN_EVENT_ID_GRAPHICS, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
]


class HostWatch:
    """Keeps one host's connection, callbacks and cache; reconnects with backoff until cancelled."""

    def __init__(self, watcher: Watcher, host_id: int) -> None:
        self.watcher = watcher
        self.host_id = host_id
        self.conn: libvirt.virConnect | None = None
        self.callback_ids: list[tuple[str, int]] = []
        self.pending: dict[str, bool] = {}  # uuid -> another refresh wanted while one runs
        self.loop = asyncio.get_event_loop()

    async def blocking(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self.watcher.pool, fn, *args), timeout)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            host = await sync_to_async(Host.objects.filter(pk=self.host_id).first)()
            if host is None:
                return
            reason = await self.session(host)
            if reason:
                backoff = min(backoff * 2, BACKOFF_MAX) if host.status == Host.OFFLINE else 0.5
                await self.set_status(host, False, reason)
            await asyncio.sleep(backoff)

    async def session(self, host: Host) -> str:
        """One connected period: connect, resynchronise, then watch until the connection dies."""
        try:
            conn = await self.blocking(self.watcher.manager.open, host.target(), OPEN_TIMEOUT,
                                       timeout=OPEN_TIMEOUT + 1)
        except (VirtError, TimeoutError) as exc:
            return str(exc) or f"Host {host.name} did not answer within {OPEN_TIMEOUT:g} s."
        self.conn = conn
        closed = asyncio.Event()
        try:
            conn.registerCloseCallback(lambda *_: self.loop.call_soon_threadsafe(closed.set), None)
            self.register(conn)
            await self.resync(host)
            await self.set_status(host, True)
            collecting = asyncio.ensure_future(self.collect(host, conn))
            try:
                return await self.watch(conn, closed)
            finally:
                collecting.cancel()
        except (libvirt.libvirtError, VirtError, TimeoutError) as exc:
            return str(exc) or "The host stopped answering."
        finally:
            self.release_connection()

    async def collect(self, host: Host, conn: libvirt.virConnect) -> None:
        """A usage pass every WEBVIRT_METRICS_INTERVAL seconds, on the step's boundary. A pass the host
        does not answer in time is skipped; it never holds up the events or another host's passes."""
        interval = settings.WEBVIRT_METRICS_INTERVAL
        memory = store.Memory()
        while True:
            await asyncio.sleep(interval - time.time() % interval)
            at = time.time()
            try:
                host_now = await self.blocking(stats.read_host, conn, at, timeout=interval / 2)
                domains_now = await self.blocking(stats.read_domains, conn, at, timeout=interval / 2)
                samples = await sync_to_async(store.record)(host, memory, host_now, domains_now)
            except (libvirt.libvirtError, TimeoutError) as exc:
                log.info("usage pass on %s skipped: %s", host.name, exc or "no answer in time")
                continue
            except Exception:  # the database, say: this pass is lost, the next one tries again
                log.exception("usage pass on %s failed", host.name)
                continue
            for sample in samples:
                await publish.apublish_to(sample.group, sample.message())

    async def watch(self, conn: libvirt.virConnect, closed: asyncio.Event) -> str:
        while True:
            try:
                await asyncio.wait_for(closed.wait(), PING_INTERVAL)
                return "The connection to the host was closed."
            except TimeoutError:
                pass
            try:
                await self.blocking(conn.getLibVersion, timeout=PING_TIMEOUT)
            except TimeoutError:
                return f"The host did not answer a keepalive within {PING_TIMEOUT:g} s."

    def register(self, conn: libvirt.virConnect) -> None:
        for event_id in DOMAIN_EVENTS:
            cid = conn.domainEventRegisterAny(None, event_id, self.on_domain_event, event_id)
            self.callback_ids.append(("domain", cid))
        for kind, register, event_id in (
            ("network", conn.networkEventRegisterAny, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE),
            ("pool", conn.storagePoolEventRegisterAny, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE),
        ):
            try:
                self.callback_ids.append((kind, register(None, event_id, self.on_object_event, kind)))
            except libvirt.libvirtError as exc:
                log.info("host %s offers no %s events: %s", self.host_id, kind, exc)

    def release_connection(self) -> None:
        conn, ids, self.conn, self.callback_ids = self.conn, self.callback_ids, None, []
        if conn is not None:
            # Closing may block on a dead host: let a pool thread do it, never the loop.
            closing = self.watcher.pool.submit(_close_quietly, conn, ids)
            self.watcher.closing.add(closing)
            closing.add_done_callback(self.watcher.closing.discard)

    async def resync(self, host: Host) -> None:
        listed_at = timezone.now()
        snaps = await self.blocking(virt_domains.list_states, self.conn, timeout=SYNC_TIMEOUT)
        result = await sync_to_async(domain_services.reconcile)(host, snaps, listed_at)
        for row in [*result.created, *result.updated]:
            row.host = host
            await publish.apublish(publish.domain_message(row))
        for row in result.removed:
            await publish.apublish(publish.domain_removed_message(host.pk, row.pk, row.uuid, row.name, row.owner_id))
        log.info("host %s resynchronised: %s", host.name, result.counts())

    async def set_status(self, host: Host, online: bool, reason: str = "") -> None:
        before = (host.status, host.status_reason)
        await sync_to_async(host.record_status)(online, reason)
        if (host.status, host.status_reason) != before:
            log.info("host %s is %s %s", host.name, host.status, reason)
            await publish.apublish(publish.host_message(host))

    # Events (called on the loop thread by libvirtaio) -------------------------------------

    def on_domain_event(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, *args: Any) -> None:
        # libvirt may call back from another thread: hop onto the loop before touching state.
        self.loop.call_soon_threadsafe(self.domain_changed, dom)

    def domain_changed(self, dom: libvirt.virDomain) -> None:
        uuid = dom.UUIDString()
        if uuid in self.pending:
            self.pending[uuid] = True  # A refresh is running; run once more when it ends.
            return
        self.pending[uuid] = False
        self.watcher.spawn(self.refresh_domain(dom, uuid))

    async def refresh_domain(self, dom: libvirt.virDomain, uuid: str) -> None:
        try:
            while True:
                self.pending[uuid] = False
                await self.apply_domain(dom, uuid)
                if not self.pending.get(uuid):
                    return
        finally:
            self.pending.pop(uuid, None)

    async def apply_domain(self, dom: libvirt.virDomain, uuid: str) -> None:
        host = await sync_to_async(Host.objects.filter(pk=self.host_id).first)()
        if host is None:
            return  # Removed while its events were still coming in; this watch is being stopped.
        try:
            snap = await self.blocking(virt_domains.read_state, dom, timeout=PING_TIMEOUT)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                log.warning("could not read domain %s on %s: %s", uuid, host.name, exc)
                return
            row = await sync_to_async(Domain.objects.filter(host=host, uuid=uuid).first)()
            if row is not None and row.migrating_to_id is None:  # a migrating domain's row follows it
                pk = row.pk  # delete() forgets it
                await sync_to_async(row.delete)()
                await publish.apublish(publish.domain_removed_message(host.pk, pk, uuid, row.name, row.owner_id))
            return
        except TimeoutError:
            return
        row = await sync_to_async(domain_services.store_state)(host, snap)
        await publish.apublish(publish.domain_message(row))

    def on_object_event(self, _conn: libvirt.virConnect, obj: Any, event: int, detail: int, kind: str) -> None:
        message = {"type": kind, "host": self.host_id, "name": obj.name(), "event": event, "detail": detail}
        self.loop.call_soon_threadsafe(self.watcher.spawn, publish.apublish(message))


class Watcher:
    """Shares hosts out among watchers through Redis leases and runs a HostWatch for each it holds."""

    def __init__(self, redis_url: str, holder: str | None = None, prefix: str = "webvirt") -> None:
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.leases = Leases(redis_url, self.holder, prefix)
        self.manager = ConnectionManager(open_timeout=OPEN_TIMEOUT)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="watch-libvirt")
        self.watches: dict[int, tuple[str, asyncio.Task]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.closing: set[Future] = set()  # connections being closed by pool threads

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, stop: asyncio.Event) -> None:
        # libvirt's asyncio implementation must be registered from the running loop, before any
        # connection is opened, or keepalive cannot be set.
        libvirtaio.virEventRegisterAsyncIOImpl()
        event_loop.use_external()
        log.info("watcher %s started", self.holder)
        try:
            while not stop.is_set():
                try:
                    await self.balance()
                except RedisError as exc:
                    log.warning("Redis is not answering (%s); retrying", exc)
                except Exception:
                    log.exception("watcher could not balance its hosts; retrying")
                try:
                    await asyncio.wait_for(stop.wait(), HOSTS_POLL)
                except TimeoutError:
                    pass
        finally:
            await self.shutdown()

    async def balance(self) -> None:
        """Start watching hosts we can lease, stop those removed, edited or taken over."""
        hosts = await sync_to_async(lambda: {h.pk: f"{h.uri}|{h.updated.isoformat()}" for h in Host.objects.all()})()
        for host_id in list(self.watches):
            version, _task = self.watches[host_id]
            if host_id not in hosts or hosts[host_id] != version or not await self.leases.renew(host_id):
                await self.stop_watch(host_id)
        for host_id, version in hosts.items():
            if host_id not in self.watches and await self.leases.acquire(host_id):
                log.info("watching host %s", host_id)
                self.watches[host_id] = (version, asyncio.ensure_future(HostWatch(self, host_id).run()))

    async def stop_watch(self, host_id: int) -> None:
        _version, task = self.watches.pop(host_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self.leases.release(host_id)

    async def shutdown(self) -> None:
        for host_id in list(self.watches):
            await self.stop_watch(host_id)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.leases.close()
        # libvirt's asyncio event implementation needs the loop while connections close: wait a
        # little for those closes (a dead host's may never finish) before the loop stops.
        if self.closing:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self.closing)], timeout=CLOSE_TIMEOUT)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("watcher %s stopped", self.holder)


def _close_quietly(conn: libvirt.virConnect, callback_ids: list[tuple[str, int]]) -> None:
    deregister = {"domain": conn.domainEventDeregisterAny, "network": conn.networkEventDeregisterAny,
                  "pool": conn.storagePoolEventDeregisterAny}
    for kind, cid in callback_ids:
        try:
            deregister[kind](cid)
        except libvirt.libvirtError:
            pass
    for step in (conn.unregisterCloseCallback, conn.close):
        try:
            step()
        except libvirt.libvirtError:
            pass
