"""One connection manager per process: cached connections with timeouts, keepalive and reconnect.

Every call into libvirt made for a web request goes through `ConnectionManager.call`, which runs it
in a worker thread and waits at most a few seconds. A host that stops answering therefore costs a
request a bounded wait, never a hung page; while an earlier call to that host is still stuck, new
calls fail at once instead of piling up threads behind it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import libvirt

from webvirt.virt import errors
from webvirt.virt.errors import VirtError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Silence libvirt's default handler, which prints every error to stderr; we report them ourselves.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

KNOWN_SCHEMES = {"qemu", "qemu+ssh", "qemu+tcp", "qemu+tls", "qemu+unix", "qemu+libssh", "qemu+libssh2",
                 "test", "test+unix", "test+tcp", "test+ssh", "test+tls", "lxc", "lxc+ssh", "xen", "xen+ssh",
                 "bhyve", "bhyve+ssh", "ch", "ch+ssh", "vz", "vz+ssh"}
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
MAX_STUCK_OPENS = 3  # unanswered connection attempts per host still holding a thread


@dataclass(frozen=True)
class Target:
    """Everything needed to open a connection to one host. `key` identifies its cache slot."""

    key: str
    uri: str
    name: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    ssh_key: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        return self.name or self.uri


def check_uri(uri: str) -> None:
    """Refuse a URI that cannot be a libvirt URI before anything tries to open it."""
    parts = urlsplit(uri.strip())
    if not parts.scheme or "://" not in uri:
        raise VirtError("That is not a libvirt URI. It looks like qemu:///system or qemu+ssh://user@host/system.",
                        errors.INVALID)
    if parts.scheme not in KNOWN_SCHEMES:
        raise VirtError(f"libvirt has no driver for the scheme '{parts.scheme}'. "
                        "Use one of qemu:///, qemu+ssh://, qemu+tcp://, qemu+tls:// or test+unix:///.",
                        errors.UNKNOWN_SCHEME)


class _EventLoop:
    """libvirt's default event implementation run in a daemon thread (keepalive and close callbacks).

    The watcher registers the asyncio implementation instead and calls `use_external()`; only one
    implementation may exist per process. After a fork (Celery's prefork pool) the thread is gone
    while the registration stays, and libvirtd would drop idle connections, so it is restarted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered = False
        self._external = False
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def use_external(self) -> None:
        self._external = True

    def ensure(self) -> None:
        if self._external:
            return
        with self._lock:
            if not self._registered:
                libvirt.virEventRegisterDefaultImpl()
                self._registered = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="libvirt-events", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._thread = None


event_loop = _EventLoop()


class ConnectionManager:
    """Cached connections per host, opened with a timeout, safe across threads."""

    def __init__(self, open_timeout: float = 5.0, call_timeout: float = 5.0, key_dir: Path | None = None) -> None:
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self.key_dir = key_dir or Path(tempfile.gettempdir()) / f"webvirt-keys-{os.getuid()}"
        self._lock = threading.Lock()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._open_locks: dict[str, threading.Lock] = {}
        self._stuck: dict[str, float] = {}
        self._stuck_opens: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="libvirt-call")
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # Sockets and threads of the parent are useless in a forked child: start afresh.
        self._lock = threading.Lock()
        self._conns = {}
        self._open_locks = {}
        self._stuck = {}
        self._stuck_opens = {}
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="libvirt-call")

    # Opening -------------------------------------------------------------------------------

    def get(self, target: Target) -> libvirt.virConnect:
        """The cached, live connection for `target`, opened (with a timeout) if needed."""
        conn = self._conns.get(target.key)
        if conn is not None and self._alive(conn):
            return conn
        with self._lock:
            open_lock = self._open_locks.setdefault(target.key, threading.Lock())
        if not open_lock.acquire(timeout=self.open_timeout):
            raise VirtError(f"Host {target.label} did not answer within {self.open_timeout:g} s.", errors.UNREACHABLE)
        try:
            conn = self._conns.get(target.key)
            if conn is not None and self._alive(conn):
                return conn
            conn = self.open(target)
            conn.registerCloseCallback(self._on_close, target.key)
            with self._lock:
                self._conns[target.key] = conn
            return conn
        finally:
            open_lock.release()

    def open(self, target: Target, timeout: float | None = None) -> libvirt.virConnect:
        """Open a new, uncached connection, giving up after `timeout` seconds."""
        check_uri(target.uri)
        event_loop.ensure()
        timeout = self.open_timeout if timeout is None else timeout
        # An attempt to a host that accepts and never answers can block its thread for as long as
        # TCP lets it. Retries (the watcher's) may each leave one behind: cap them per host, so a
        # dead host can never use up the pool that every other host shares.
        if self._stuck_opens.get(target.key, 0) >= MAX_STUCK_OPENS:
            raise VirtError(f"Host {target.label} has not answered the last {MAX_STUCK_OPENS} connection "
                            "attempts.", errors.UNREACHABLE)
        future = self._pool.submit(self._open_blocking, target)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            # The thread goes on; whatever it opens late is closed rather than leaked. Until it ends,
            # calls to this host fail at once (see `call`) instead of tying up more threads behind it.
            future.add_done_callback(_close_late)
            self._stuck.setdefault(target.key, time.monotonic() - timeout)
            with self._lock:
                self._stuck_opens[target.key] = self._stuck_opens.get(target.key, 0) + 1
            future.add_done_callback(lambda _f: self._open_ended(target.key))
            raise VirtError(f"Host {target.label} did not answer within {timeout:g} s.", errors.UNREACHABLE) from None

    def _open_ended(self, key: str) -> None:
        with self._lock:
            self._stuck.pop(key, None)
            left = self._stuck_opens.get(key, 1) - 1
            if left > 0:
                self._stuck_opens[key] = left
            else:
                self._stuck_opens.pop(key, None)

    def _open_blocking(self, target: Target) -> libvirt.virConnect:
        uri = self._uri_with_key(target)
        try:
            if target.username or target.password:
                conn = libvirt.openAuth(uri, self._auth(target), 0)
            else:
                conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise errors.from_libvirt(exc, connecting=True) from None
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # Local drivers (and the test driver) have no keepalive; nothing to do.
        return conn

    def key_path(self, target: Target) -> Path:
        """Where the decrypted SSH key of `target` is kept while ssh needs it.

        A key's "@version" suffix (see Host.target) is left out: one file per host, rewritten on edit.
        """
        slot = target.key.split("@", 1)[0]
        return self.key_dir / f"{slot.replace(':', '_').replace('/', '_')}.key"

    def forget_key(self, target: Target) -> None:
        """Remove the decrypted key file of `target`, once nothing will open a connection with it again."""
        self.key_path(target).unlink(missing_ok=True)

    def _uri_with_key(self, target: Target) -> str:
        if not target.ssh_key:
            return target.uri
        self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.key_path(target)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(target.ssh_key.strip() + "\n")
        parts = urlsplit(target.uri)
        query = dict(parse_qsl(parts.query))
        query.update({"keyfile": str(path), "no_tty": "1"})
        return urlunsplit(parts._replace(query=urlencode(query)))

    @staticmethod
    def _auth(target: Target) -> list[Any]:
        def callback(credentials: list[Any], _data: object) -> int:
            for cred in credentials:
                if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                    cred[4] = target.username
                elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                    cred[4] = target.password
                else:
                    return -1
            return 0

        return [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], callback, None]

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive() == 1)
        except libvirt.libvirtError:
            return False

    def _on_close(self, conn: libvirt.virConnect, reason: int, key: str) -> None:
        log.info("libvirt connection %s closed (reason %s); it reopens on next use", key, reason)
        with self._lock:
            if self._conns.get(key) is conn:
                del self._conns[key]

    def drop(self, key: str) -> None:
        """Forget (and close) the cached connection for `key`, e.g. when the host is edited or removed."""
        with self._lock:
            conn = self._conns.pop(key, None)
            self._stuck.pop(key, None)
        if conn is not None:
            self._pool.submit(_quiet_close, conn)

    # Calling -------------------------------------------------------------------------------

    def call(self, target: Target, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
        """Run `fn(conn)` against the host, in a thread, waiting at most `timeout` seconds."""
        timeout = self.call_timeout if timeout is None else timeout
        since = self._stuck.get(target.key)
        if since is not None:
            raise VirtError(f"Host {target.label} has not answered for {time.monotonic() - since:.0f} s.",
                            errors.UNREACHABLE)
        started = time.monotonic()
        future = self._pool.submit(self._call_blocking, target, fn)
        try:
            return future.result(timeout=timeout + self.open_timeout)
        except FutureTimeout:
            self._stuck.setdefault(target.key, started)
            future.add_done_callback(lambda _f: self._stuck.pop(target.key, None))
            raise VirtError(f"Host {target.label} did not answer within {timeout:g} s.", errors.TIMEOUT) from None

    def _call_blocking(self, target: Target, fn: Callable[[libvirt.virConnect], T]) -> T:
        conn = self.get(target)
        try:
            return fn(conn)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC,
                                        libvirt.VIR_ERR_INTERNAL_ERROR) and not self._alive(conn):
                self.drop(target.key)
                raise VirtError(f"The connection to host {target.label} was lost.", errors.UNREACHABLE,
                                detail=str(exc)) from None
            raise errors.from_libvirt(exc) from None


def _quiet_close(conn: libvirt.virConnect) -> None:
    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError:
        pass
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


def _close_late(future: Future[libvirt.virConnect]) -> None:
    if future.exception() is None:
        _quiet_close(future.result())
