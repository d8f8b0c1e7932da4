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
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt
import libvirtaio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from redis.exceptions import RedisError

from webvirt.domains import services as domain_services
from webvirt.domains.models import Domain
from webvirt.events import publish
from webvirt.events.leases import Leases, Survey, preferred_holders
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
RESYNC_CONCURRENCY = 16  # listings at once, out of the 32 pool threads
BACKOFF_MAX = 3.0  # Short, so a host that comes back is online again within 5 s.
CLOSE_TIMEOUT = 2.0  # How long a stopping watcher waits for its connections to close.
HOSTS_POLL = 2.0  # How often leases are renewed and the host table re-read (hosts added or removed).
MIN_HOLD = 2 * HOSTS_POLL  # A host is held this long at least before it is handed over: no flapping.
LEASE_MARGIN = 1.5  # Watches stop this long before leases not renewed run out.
HOSTS_LOGGED = 10  # Host names listed in one log line.

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
        listed_at, started = timezone.now(), time.monotonic()
        # After a restart every host resynchronises at once. Listing is what takes the time (~6 libvirt
        # calls a domain); a cap leaves pool threads for keepalives and events, and the timeout then
        # measures the host, not the queue.
        async with self.watcher.resync_slots:
            snaps = await self.blocking(virt_domains.list_states, self.conn, timeout=SYNC_TIMEOUT)
        listed = time.monotonic()
        # Thread-sensitive on purpose: all of a watcher's database work runs in order on one thread and
        # connection. Measured with 100 hosts of 100 domains, reconciling is ~5% of a resynchronisation
        # and spreading it over threads gained nothing, while SQLite would only add writer contention.
        result = await sync_to_async(domain_services.reconcile)(host, snaps, listed_at)
        log.debug("host %s: listed in %.2f s, reconciled in %.2f s", host.name, listed - started,
                  time.monotonic() - listed)
        for row in [*result.created, *result.updated]:
            row.host = host
            await publish.apublish(publish.domain_message(row))
        for row in result.removed:
            await publish.apublish(publish.domain_removed_message(host.pk, row.pk, row.uuid, row.name, row.owner_id))
        log.info("host %s resynchronised in %.1f s: %s", host.name, time.monotonic() - started, result.counts())

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
    """Shares hosts out among watchers through Redis leases and runs a HostWatch for each it holds.

    Each pass (every HOSTS_POLL s) announces this watcher, renews its leases and reads every host's
    holder in one Redis round trip (`Leases.survey`), then works out each host's preferred holder
    among the live watchers (`preferred_holders`: fair shares, few moves). It takes the free hosts it
    is preferred for, and any host left free for a poll or more (views of who is live may differ for
    a moment; no host may stay unwatched). It hands a host over (releases it) when another watcher,
    live for a poll or more, is preferred for it. The new holder resynchronises the host, so nothing
    changed in between is lost.
    """

    def __init__(self, redis_url: str, holder: str | None = None, prefix: str = "webvirt") -> None:
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.leases = Leases(redis_url, self.holder, prefix)
        self.manager = ConnectionManager(open_timeout=OPEN_TIMEOUT)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="watch-libvirt")
        # The passes read the host table on a thread of their own, so that lease renewals never queue
        # behind the hosts' database work (a hundred resynchronisations after a restart).
        self.control = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watch-balance")
        self.resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)
        self.watches: dict[int, Held] = {}
        self.tasks: set[asyncio.Task] = set()
        self.closing: set[Future] = set()  # connections being closed by pool threads
        self.passes = 0
        self.live_since: dict[str, float] = {}  # other watchers -> when this one first saw them live
        self.free_since: dict[int, float] = {}  # hosts nobody holds -> when this one first saw them free
        self.last_holders: dict[int, str | None] = {}  # each host's holder at the last pass
        self.hosts: dict[int, HostRow] = {}  # the host table as last read
        self.renewed_at = time.monotonic()  # when the leases were last renewed

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
        self.spawn(self.guard_leases())
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
        """One pass: renew, then stop the watches we should no longer run and start the ones we may."""
        try:
            self.hosts = await sync_to_async(_host_table, thread_sensitive=False, executor=self.control)()
        except Exception as exc:  # renew with the hosts known so far; the leases must not lapse for this
            log.warning("watcher %s could not read the host table (%s); keeping %d hosts", self.holder, exc,
                        len(self.watches))
            if self.passes == 0:
                raise
        hosts = self.hosts
        survey = await self.leases.survey(sorted(hosts), renew=set(self.watches))
        now = self.renewed_at = time.monotonic()
        self.passes += 1
        self.note_watchers(survey.watchers, now)
        preferred = preferred_holders(sorted(hosts), survey.watchers, survey.holders)
        await self.drop_watches(hosts, survey, preferred, now)
        # The first pass only announces us: watchers started together then see each other before any
        # takes hosts, instead of the first one taking all and handing most over a poll later.
        if self.passes > 1:
            await self.take_hosts(hosts, survey, preferred, now)
        self.last_holders = survey.holders

    async def guard_leases(self) -> None:
        """Stop every watch when the leases could not be renewed (Redis unreachable) for nearly their
        TTL: once they run out another watcher may take the hosts, and no host may be watched twice.
        Stopped watches whose lease we still hold are restarted by the next pass that renews."""
        safe_for = self.leases.ttl_ms / 1000 - LEASE_MARGIN
        while True:
            await asyncio.sleep(0.5)
            running = [held for held in self.watches.values() if not held.task.done()]
            if running and time.monotonic() - self.renewed_at >= safe_for:
                log.warning("watcher %s could not renew its leases for %.0f s: it stops watching %s",
                            self.holder, time.monotonic() - self.renewed_at, _hosts([h.name for h in running]))
                for held in running:
                    held.task.cancel()

    def note_watchers(self, live: list[str], now: float) -> None:
        joined = [w for w in live if w != self.holder and w not in self.live_since]
        left = [w for w in self.live_since if w not in live]
        for name in left:
            del self.live_since[name]
        for name in joined:
            self.live_since[name] = now
        if (joined or left) and self.passes > 1:
            log.info("watcher %s: %s; %d watchers now", self.holder,
                     "; ".join(part for part in (_names("joined", joined), _names("gone", left)) if part),
                     len(live))

    async def drop_watches(self, hosts: dict[int, HostRow], survey: Survey, preferred: dict[int, str],
                           now: float) -> None:
        """Stop watching hosts removed, edited, lost or preferred elsewhere (those leases are released)."""
        handed: dict[str, list[int]] = {}
        for host_id, held in list(self.watches.items()):
            row, holder = hosts.get(host_id), survey.holders.get(host_id)
            if row is None:
                log.info("watcher %s released host %s: it was removed", self.holder, held.name)
                await self.stop_watch(host_id, release=True)
            elif held.task.done():  # stopped by guard_leases (or ended): start afresh
                await self.stop_watch(host_id, release=True)
            elif holder != self.holder:
                # Our lease ran out (this process stalled for a whole TTL): someone else may watch it now.
                log.warning("watcher %s lost host %s to %s: its lease ran out", self.holder, held.name,
                            holder or "nobody")
                await self.stop_watch(host_id, release=False)
            elif row.version != held.version:
                log.info("watcher %s restarts its watch of host %s: it was edited", self.holder, row.name)
                await self.stop_watch(host_id, release=False)
                self.start_watch(host_id, row, now)
            elif self.should_hand_over(preferred.get(host_id), held, now):
                handed.setdefault(preferred[host_id], []).append(host_id)
        for successor, host_ids in handed.items():
            names = [self.watches[h].name for h in host_ids]
            for host_id in host_ids:
                await self.stop_watch(host_id, release=False)
            await self.leases.release_many(host_ids)
            log.info("watcher %s handed over %s to %s (%d held)", self.holder, _hosts(names), successor,
                     len(self.watches))

    def should_hand_over(self, successor: str | None, held: Held, now: float) -> bool:
        """Whether another watcher should hold this host, has been live long enough to be trusted to
        take it, and we have held it long enough (no host flaps between two watchers)."""
        if successor is None or successor == self.holder:
            return False
        since = self.live_since.get(successor)
        return since is not None and now - since >= HOSTS_POLL and now - held.since >= MIN_HOLD

    async def take_hosts(self, hosts: dict[int, HostRow], survey: Survey, preferred: dict[int, str],
                         now: float) -> None:
        """Lease the free hosts we are preferred for, and those free for a poll or more."""
        wanted, adopted = [], []
        for host_id in sorted(hosts):
            if survey.holders.get(host_id) is not None:
                self.free_since.pop(host_id, None)
                continue
            free_since = self.free_since.setdefault(host_id, now)
            if preferred.get(host_id) == self.holder:
                wanted.append(host_id)
            elif now - free_since >= HOSTS_POLL:
                adopted.append(host_id)
        for host_id in [h for h in self.free_since if h not in hosts]:
            del self.free_since[host_id]
        got = await self.leases.acquire_many(wanted + adopted)
        for host_id in got:
            self.free_since.pop(host_id, None)
            self.start_watch(host_id, hosts[host_id], now)
        if got:
            log.info("watcher %s took %s (%d held; live watchers: %d)", self.holder,
                     self.describe_taken(got, hosts, set(adopted), survey.watchers), len(self.watches),
                     len(survey.watchers))

    def describe_taken(self, got: list[int], hosts: dict[int, HostRow], adopted: set[int], live: list[str]) -> str:
        """'host a; 2 hosts b, c from w3 (gone)': the hosts just taken, by whom held them before."""
        groups: dict[str, list[str]] = {}
        for host_id in got:
            before = self.last_holders.get(host_id)
            if host_id in adopted:
                origin = " (left unwatched by the watcher preferred for it)"
            elif before and before != self.holder:
                origin = f" from {before} ({'handed over' if before in live else 'gone'})"
            else:
                origin = ""
            groups.setdefault(origin, []).append(hosts[host_id].name)
        return "; ".join(f"{_hosts(names)}{origin}" for origin, names in groups.items())

    def start_watch(self, host_id: int, row: HostRow, now: float) -> None:
        self.watches[host_id] = Held(row.name, row.version, now, asyncio.ensure_future(HostWatch(self, host_id).run()))

    async def stop_watch(self, host_id: int, release: bool = True) -> None:
        held = self.watches.pop(host_id)
        held.task.cancel()
        await asyncio.gather(held.task, return_exceptions=True)
        if release:
            await self.leases.release(host_id)

    async def shutdown(self) -> None:
        held, stopped = list(self.watches), list(self.watches.values())
        for host_id in held:
            await self.stop_watch(host_id, release=False)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self.leases.release_many(held)
            await self.leases.leave()
            if held:
                log.info("watcher %s released %s", self.holder, _hosts([h.name for h in stopped]))
        except RedisError as exc:
            log.warning("could not release the leases (%s): they run out within the TTL", exc)
        await self.leases.close()
        # libvirt's asyncio event implementation needs the loop while connections close: wait a
        # little for those closes (a dead host's may never finish) before the loop stops.
        if self.closing:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self.closing)], timeout=CLOSE_TIMEOUT)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.control.shutdown(wait=False)
        log.info("watcher %s stopped", self.holder)


@dataclass
class HostRow:
    name: str
    version: str  # changes when the host is edited: its watch restarts


@dataclass
class Held:
    name: str
    version: str
    since: float  # monotonic time this watcher took the host
    task: asyncio.Task


def _host_table() -> dict[int, HostRow]:
    close_old_connections()  # a connection broken (a database restart) is replaced, not failed on forever
    return {h.pk: HostRow(h.name, f"{h.uri}|{h.updated.isoformat()}") for h in Host.objects.all()}


def _hosts(names: list[str]) -> str:
    """'host a', 'hosts a, b, c' or 'hosts a, b, c and 17 more' for a log line."""
    if not names:
        return ""
    shown = ", ".join(sorted(names)[:HOSTS_LOGGED])
    more = f" and {len(names) - HOSTS_LOGGED} more" if len(names) > HOSTS_LOGGED else ""
    return f"{'host' if len(names) == 1 else f'{len(names)} hosts'} {shown}{more}"


def _names(label: str, names: list[str]) -> str:
    return f"{label} {', '.join(sorted(names))}" if names else ""


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
