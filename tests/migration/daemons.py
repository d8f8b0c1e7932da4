"""Two libvirt hosts on one machine, for migration tests: two unprivileged *session* daemons.

    hosts = TwoHosts().start()          # as root; a few seconds (the first run ever: ~10 s more)
    a, b = hosts.a, hosts.b             # SessionDaemon: .uri, .open(), .pool_dir, .host_uuid, ...
    ca, cb = a.open(), b.open()         # root's connections to them, as webvirt's would be
    ...                                 # migrate from ca to cb with hosts.MIGRATION_URI
    hosts.stop()                        # kills both daemons and their QEMUs, removes everything

What it sets up, under ``<base>/r<random>/`` (``base`` defaults to ``/tmp/webvirt-mig``; the run
directory is this run's own, so two test runs at once do not meet):

- the user ``webvirt-mig`` (``TwoHosts.USER``): a system user without a home or a login shell,
  created with ``useradd --system --user-group`` when it is missing, and left in place afterwards.
  Both daemons, and the QEMU processes they start, run as that user. Root (the tests, webvirt)
  connects to their sockets: a session socket is 0700, which root passes.
- per host (``a/``, ``b/``, owned by that user): ``c/`` (XDG_CONFIG_HOME: ``libvirt/libvirtd.conf``
  with the host's own ``host_uuid``, domain and pool definitions), ``k/`` (XDG_CACHE_HOME: the
  daemon's log ``libvirt/libvirtd.log``, QEMU logs ``libvirt/qemu/log/``), ``r/`` (XDG_RUNTIME_DIR:
  the socket ``libvirt/libvirt-sock``, pid files), and ``pool/``, the directory of the host's own
  persistent dir pool ``mig-pool`` (``POOL``): a different path on each host, for migrations that
  copy the storage.
- ``shared/``: one directory both daemons read and write, the persistent dir pool ``mig-shared``
  (``SHARED_POOL``) on both hosts at the same path, for migrations on shared storage.

Migrate with ``params[VIR_MIGRATE_PARAM_URI] = MIGRATION_URI`` (``tcp://127.0.0.1``); a
peer-to-peer migration passes ``b.uri`` as the destination: the source daemon, running as the same
user, reaches the other one's socket itself.

Files the tests put there must be usable by that user (QEMU runs as it): ``give(path)`` chowns
them, or create volumes through the pools (the daemon then creates them as the user).

Directories are short on purpose: QEMU's monitor socket lives at
``c/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock``, and a UNIX socket path has at most 107
bytes. A base directory too long for that is refused.

Speed: a fresh session daemon probes QEMU's capabilities (7-10 s on 2 cores). The probed cache is
kept in ``<base>/capabilities/`` and copied into both daemons' caches the next time; libvirt checks
it (QEMU's and libvirtd's ctimes, the kernel, ...) and probes again if it is stale.

Leftovers of a run that crashed (its owner process, whose pid and start time are in
``r<random>/owner``, is gone) are removed by the next start: the processes of that user that belong
to the run directory (their pid files, or a path under it in their environment or command line)
are killed, then the directory is removed. A run whose owner still lives is left alone.

No Django imports (libvirt only): usable from plain scripts and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import libvirt

DEFAULT_BASE = Path(os.environ.get("WEBVIRT_MIG_BASE", "/tmp/webvirt-mig"))
USER = "webvirt-mig"
POOL = "mig-pool"
SHARED_POOL = "mig-shared"
MIGRATION_URI = "tcp://127.0.0.1"
LISTEN_ADDRESS = "127.0.0.1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

START_TIMEOUT = 30.0  # seconds for a daemon to answer (10 s of it may be probing QEMU)
KILL_TIMEOUT = 10.0
# The longest UNIX socket path libvirt makes under a host's config dir: QEMU's monitor socket for a
# domain with a long name (libvirt shortens it to 20 characters) and a 4-digit id.
_MONITOR_SUFFIX = "/c/libvirt/qemu/lib/domain-9999-" + "x" * 20 + "/monitor.sock"
_MAX_UNIX_PATH = 107


class DaemonError(RuntimeError):
    """A session daemon did not start or answer; the message has the end of its log."""


# --- the user ---------------------------------------------------------------------------------

def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """The unprivileged user the daemons run as; created (needs root) if missing.

    ``useradd --system --user-group --no-create-home --home-dir /nonexistent --shell
    /usr/sbin/nologin``: no home, no login, its own group, not in group kvm (the guests are
    emulated). It stays after the tests; ``userdel webvirt-mig`` removes it.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise PermissionError(f"the user {name!r} does not exist and only root can create it")
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "webvirt migration tests (libvirt session daemons)",
         name],
        capture_output=True, text=True, check=False)
    # exit 9: created meanwhile by another run
    if result.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed ({result.returncode}): {result.stderr.strip()}")
    return pwd.getpwnam(name)


# --- processes ----------------------------------------------------------------------------------

def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): tells a pid reused from the one recorded."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def _gone(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return data.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has already exited


def processes_of(run_dir: Path, uid: int) -> set[int]:
    """Processes of `uid` that belong to `run_dir`: in one of its pid files, or naming a path under
    it in their environment (the daemons: XDG_*, HOME) or command line (QEMU)."""
    prefix = os.fsencode(str(run_dir)) + b"/"
    pids: set[int] = set()
    for pidfile in run_dir.rglob("*.pid") if run_dir.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(pidfile.read_text().strip()))
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid or _gone(pid):
                continue
            if pid in pids:
                found.add(pid)
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(var.partition(b"=")[2].startswith(prefix) for var in environ) \
                or any(prefix in arg for arg in cmdline):
            found.add(pid)
    return found


def kill_processes(pids: set[int], timeout: float = KILL_TIMEOUT) -> set[int]:
    """SIGKILL `pids` and wait until they are gone; return those still there after `timeout`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = {pid for pid in pids if not _gone(pid)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in left if not _gone(pid)}
    return left


def _owner_alive(run_dir: Path) -> bool:
    try:
        pid_text, started = (run_dir / "owner").read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        # No owner file yet: a run that is just being created, or one that died right then.
        # Anything younger than a minute is given the benefit of the doubt.
        with contextlib.suppress(OSError):
            return time.time() - run_dir.stat().st_mtime < 60
        return False
    return not _gone(pid) and _process_start_time(pid) == started


def cleanup_leftovers(base: Path = DEFAULT_BASE, user: str = USER) -> list[Path]:
    """Remove the run directories under `base` whose owner process is gone, after killing the
    processes of `user` that belong to them. Returns the directories removed."""
    if not base.is_dir():
        return []
    try:
        uid: int | None = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = None
    removed = []
    for run_dir in sorted(base.glob("r*")):
        if not run_dir.is_dir() or run_dir.is_symlink() or _owner_alive(run_dir):
            continue
        if uid is not None:
            kill_processes(processes_of(run_dir, uid))
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


# --- one host -----------------------------------------------------------------------------------

# Each host's VNC ports (100 from this one), away from the machine's libvirtd's (5900 up).
VNC_PORTS = {"a": 15900, "b": 16000}


class SessionDaemon:
    """One "host": a session libvirtd of the test user with its own XDG directories."""

    def __init__(self, name: str, root: Path, user: pwd.struct_passwd) -> None:
        self.name = name
        self.root = root
        self.user = user
        self.config_home = root / "c"
        self.cache_home = root / "k"
        self.runtime_dir = root / "r"
        self.pool_dir = root / "pool"
        self.host_uuid = str(uuidlib.uuid4())
        self.socket = self.runtime_dir / "libvirt" / "libvirt-sock"
        self.uri = f"qemu+unix:///session?socket={self.socket}"
        self.log = self.cache_home / "libvirt" / "libvirtd.log"

    def __repr__(self) -> str:
        return f"<SessionDaemon {self.name} {self.uri}>"

    @property
    def caps_cache(self) -> Path:
        return self.cache_home / "libvirt" / "qemu" / "cache" / "capabilities"

    def env(self) -> dict[str, str]:
        return {"PATH": PATH, "HOME": str(self.root), "USER": self.user.pw_name, "LOGNAME": self.user.pw_name,
                "LC_ALL": "C", "XDG_CONFIG_HOME": str(self.config_home), "XDG_CACHE_HOME": str(self.cache_home),
                "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def prepare(self, seed: Path | None) -> None:
        for folder in (self.config_home / "libvirt", self.cache_home, self.runtime_dir, self.pool_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Nothing else in the daemon's configuration: the defaults are a session host's.
        (self.config_home / "libvirt" / "libvirtd.conf").write_text(
            "# written by tests/migration/daemons.py\n"
            f'host_uuid = "{self.host_uuid}"\n')
        # VNC ports of its own: every daemon picks the lowest free one from 5900 up, and the machine's
        # libvirtd (another test run) found 5901 free and then lost it to a guest here ("Address already
        # in use", the guest failed to start).
        first = VNC_PORTS[self.name]
        (self.config_home / "libvirt" / "qemu.conf").write_text(
            "# written by tests/migration/daemons.py\n"
            f"remote_display_port_min = {first}\nremote_display_port_max = {first + 99}\n")
        if seed is not None and seed.is_dir():
            self.caps_cache.mkdir(parents=True, exist_ok=True)
            for cached in seed.glob("*.xml"):
                shutil.copyfile(cached, self.caps_cache / cached.name)
        _chown_tree(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        os.chmod(self.runtime_dir, 0o700)
        os.chmod(self.pool_dir, 0o755)

    def start(self) -> None:
        """Start `libvirtd --daemon` as the user (it returns once the daemon has forked)."""
        env = [f"{key}={value}" for key, value in self.env().items()]
        result = subprocess.run(
            ["runuser", "-u", self.user.pw_name, "--", "env", "-i", *env, "libvirtd", "--daemon"],
            cwd="/", capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            raise DaemonError(f"libvirtd for host {self.name} did not start ({result.returncode}): "
                              f"{result.stderr.strip()}\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.runtime_dir / "libvirt" / "libvirtd.pid").read_text().strip())
        return None

    def open(self) -> libvirt.virConnect:
        """A new read-write connection (the caller closes it)."""
        return libvirt.open(self.uri)

    def wait_until_answers(self, deadline: float) -> None:
        """Until the socket answers and the QEMU driver is usable (capabilities probed)."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            pid = self.pid
            if pid is not None and _gone(pid):
                raise DaemonError(f"libvirtd for host {self.name} exited\n{self.log_tail()}")
            # The daemon binds its socket before its drivers are up; a client that connects early
            # waits in the socket's backlog. Polling for the file keeps libvirt from printing an
            # error for every refused attempt.
            if not self.socket.is_socket():
                time.sleep(0.02)
                continue
            try:
                conn = self.open()
            except libvirt.libvirtError as exc:
                last = exc
                time.sleep(0.1)
                continue
            try:
                conn.getURI()
                # The first call needing QEMU's capabilities waits for the probe: have it now.
                conn.getDomainCapabilities(None, None, None, "qemu", 0)
            finally:
                conn.close()
            return
        raise DaemonError(f"libvirtd for host {self.name} did not answer on {self.socket}: {last}\n"
                          f"{self.log_tail()}")

    def ensure_pool(self, conn: libvirt.virConnect, name: str, path: Path) -> None:
        """A persistent, autostarted, running dir pool `name` at `path`."""
        pool = next((pool for pool in conn.listAllStoragePools(0) if pool.name() == name), None)
        if pool is None:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0)
        if not pool.isActive():
            pool.create(0)
        pool.setAutostart(1)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return f"({self.log} is missing)"
        return f"-- end of {self.log}:\n" + "\n".join(text[-lines:])


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for entry in (*dirs, *files):
            os.lchown(os.path.join(folder, entry), uid, gid)


# --- two hosts ----------------------------------------------------------------------------------

class TwoHosts:
    """Two session daemons of one unprivileged user, host ``a`` and host ``b`` (see the module doc)."""

    USER = USER
    POOL = POOL
    SHARED_POOL = SHARED_POOL
    MIGRATION_URI = MIGRATION_URI
    LISTEN_ADDRESS = LISTEN_ADDRESS

    def __init__(self, base_dir: Path | str = DEFAULT_BASE, user: str = USER) -> None:
        self.base_dir = Path(base_dir)
        self.user_name = user
        self.run_dir: Path | None = None
        self.user: pwd.struct_passwd | None = None
        self._hosts: tuple[SessionDaemon, SessionDaemon] | None = None
        self.started_in: float | None = None  # seconds start() took

    # --- what tests use ---

    @property
    def hosts(self) -> tuple[SessionDaemon, SessionDaemon]:
        if self._hosts is None:
            raise RuntimeError("TwoHosts is not started")
        return self._hosts

    @property
    def a(self) -> SessionDaemon:
        return self.hosts[0]

    @property
    def b(self) -> SessionDaemon:
        return self.hosts[1]

    @property
    def uris(self) -> tuple[str, str]:
        return self.a.uri, self.b.uri

    @property
    def shared_dir(self) -> Path:
        """Read and written by both hosts, at the same path: pool SHARED_POOL on both."""
        assert self.run_dir is not None, "TwoHosts is not started"
        return self.run_dir / "shared"

    @property
    def uid(self) -> int:
        assert self.user is not None, "TwoHosts is not started"
        return self.user.pw_uid

    @property
    def gid(self) -> int:
        assert self.user is not None, "TwoHosts is not started"
        return self.user.pw_gid

    def give(self, *paths: Path | str) -> None:
        """Make files or directories (recursively) the daemons' user's, so QEMU can use them."""
        for path in paths:
            path = Path(path)
            if path.is_dir() and not path.is_symlink():
                _chown_tree(path, self.uid, self.gid)
            else:
                os.lchown(path, self.uid, self.gid)

    def run_as_user(self, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command as the daemons' user (e.g. qemu-img, to make a file it owns)."""
        kwargs.setdefault("check", True)
        kwargs.setdefault("capture_output", True)
        return subprocess.run(["runuser", "-u", self.user_name, "--", *argv], text=True, **kwargs)

    # --- lifetime ---

    def start(self) -> TwoHosts:
        """Create the user if needed, remove leftovers, start both daemons, define the pools.

        On failure everything started so far is stopped again before the error is raised.
        """
        started = time.monotonic()
        if os.geteuid() != 0:
            raise PermissionError("TwoHosts needs root: it creates a user and starts daemons as it")
        for tool in ("libvirtd", "runuser", "useradd"):
            if shutil.which(tool, path=PATH) is None:
                raise FileNotFoundError(f"{tool} not found (scripts/setup.sh installs libvirt)")
        if self._hosts is not None:
            raise RuntimeError("TwoHosts is started already")
        self.user = ensure_user(self.user_name)
        self._prepare_base()
        cleanup_leftovers(self.base_dir, self.user_name)
        self.run_dir = Path(tempfile.mkdtemp(prefix="r", dir=self.base_dir))
        try:
            self._start(started)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def _prepare_base(self) -> None:
        """The base directory: root's, 0711 (the user passes through, lists nothing), no symlink."""
        self.base_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        info = self.base_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            raise RuntimeError(f"{self.base_dir} must be a directory owned by root (a symlink is refused)")
        os.chmod(self.base_dir, 0o711)
        longest = len(str(self.base_dir)) + len("/r12345678/a") + len(_MONITOR_SUFFIX)
        if longest > _MAX_UNIX_PATH:
            raise ValueError(f"{self.base_dir} is too long: QEMU's monitor sockets under it would be "
                             f"{longest} bytes long, more than a UNIX socket path takes ({_MAX_UNIX_PATH})")

    def _start(self, started: float) -> None:
        assert self.run_dir is not None and self.user is not None
        run_dir = self.run_dir
        os.chmod(run_dir, 0o711)
        (run_dir / "owner").write_text(f"{os.getpid()} {_process_start_time(os.getpid())}\n")
        self._hosts = (SessionDaemon("a", run_dir / "a", self.user), SessionDaemon("b", run_dir / "b", self.user))
        shared = run_dir / "shared"
        shared.mkdir(mode=0o755)
        os.chown(shared, self.uid, self.gid)
        seed = self.base_dir / "capabilities"
        for host in self._hosts:
            host.prepare(seed)
        for host in self._hosts:
            host.start()
        deadline = started + START_TIMEOUT
        for host in self._hosts:
            host.wait_until_answers(deadline)
        for host in self._hosts:
            conn = host.open()
            try:
                host.ensure_pool(conn, POOL, host.pool_dir)
                host.ensure_pool(conn, SHARED_POOL, shared)
                got = ElementTree.fromstring(conn.getCapabilities()).findtext("./host/uuid")
                if got != host.host_uuid:
                    raise DaemonError(f"host {host.name} has host UUID {got}, not {host.host_uuid} "
                                      "as its libvirtd.conf says")
            finally:
                conn.close()
        # After getCapabilities, which probes every QEMU binary (qemu-system-i386 too: 4 s more)
        self._save_capabilities(seed)

    def _save_capabilities(self, seed: Path) -> None:
        """Keep host a's probed QEMU capabilities for the next run (atomically: runs may overlap)."""
        files = list(self.a.caps_cache.glob("*.xml"))
        if not files:
            return
        seed.mkdir(mode=0o700, exist_ok=True)
        for cached in files:
            target = seed / cached.name
            if target.exists() and target.read_bytes() == cached.read_bytes():
                continue
            scratch = seed / f".{cached.name}.{os.getpid()}"
            shutil.copyfile(cached, scratch)
            os.replace(scratch, target)

    def stop(self) -> None:
        """Kill both daemons, their virtlogd and QEMU processes; remove the run directory. Idempotent."""
        if self.run_dir is None:
            return
        if self.user is not None:
            left = kill_processes(processes_of(self.run_dir, self.user.pw_uid))
            if left:
                raise RuntimeError(f"processes {sorted(left)} of {self.user_name} did not die")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir = None
        self._hosts = None

    def __enter__(self) -> TwoHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
