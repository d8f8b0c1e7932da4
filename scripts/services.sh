#!/usr/bin/env bash
# Start the services webvirt needs on a development or CI machine, if they are not running yet.
# Idempotent: what already runs (or is supervised by someone else) is left alone.
#
#   bash scripts/services.sh [--test]      run: prints `export KEY=value` lines on stdout
#   eval "$(bash scripts/services.sh)"     ... so a shell can pick them up,
#   . scripts/services.sh [--test]         or source it (work is done in a child bash, so its
#                                          `set -e` and `exit` never touch your shell)
#
# What it does:
#   - libvirt: `mkdir -p /run/libvirt; virtlogd -d; libvirtd -d` for whichever SYSTEM daemon does
#     not answer on its socket (no systemd here), waits up to 20 s for
#     `virsh -c qemu:///system version`, and starts and autostarts the `default` network if it is
#     defined. "Runs" means "answers": an unprivileged session libvirtd or virtlogd (the migration
#     tests run two) is a process of the same name, so `pgrep` would be fooled by it.
#   - Redis: if REDIS_URL is unset, a private redis-server on the UNIX socket .state/redis.sock
#     (no TCP port, no persistence; pid, log in .state/) and REDIS_URL=unix://<abs>/.state/redis.sock.
#     If REDIS_URL is set it is used as it is and nothing is started.
#   - with --test: PostgreSQL answering at 127.0.0.1:5432 for
#     postgres://postgres@127.0.0.1:5432/webvirt (installs, creates and starts a local cluster,
#     and sets up trust for the postgres role on loopback, if needed).
#
# How the environment reaches make: every run rewrites .state/env, a file of `export KEY='value'`
# lines (REDIS_URL).  The Makefile runs this script and then, in the same recipe shell,
# `. ./.state/env` before starting anything.  A second terminal can do the same:
# `. .state/env`.  (webvirt/settings.py defaults to the same socket, so plain
# `.venv/bin/python manage.py ...` also finds the private Redis.)
#
# Stop the private Redis with: kill "$(cat .state/redis.pid)"   (or make clean-state)

# --- sourced: run ourselves in a child bash, then load what it wrote --------------------------
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    bash "${BASH_SOURCE[0]}" "$@" >/dev/null \
        && . "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.state/env"
    return $?
fi

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.state"
# .state holds the secret keys, the database and decrypted host keys: nobody else may list or read
# it (0711: QEMU may pass through to the test guest's image, as scripts/setup.sh says). The umask
# 077 is kept to what writes into it (not libvirtd or PostgreSQL, which this also starts).
(umask 077 && mkdir -p "$STATE")
if [[ -O "$STATE" ]]; then chmod 711 "$STATE"; fi

TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) TEST=1 ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "services: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# as_root CMD...: run CMD as root (directly, or with sudo -n), or fail with a message.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "needs root to run: $*"
    fi
}

# wait_for SECONDS DESCRIPTION CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
    local timeout="$1" what="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${timeout} s"
        sleep 0.2
    done
}

# --- libvirt ----------------------------------------------------------------------------------
command -v libvirtd >/dev/null || die "libvirtd not found: run scripts/setup.sh first"
# Without udev, /dev/kvm stays root-only. libvirt then finds KVM "not available" to the qemu user
# on every call, throws away its QEMU capabilities cache and re-probes QEMU: 4-20 s per call to
# getCapabilities or getVersion. Give /dev/kvm the group and mode udev would.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
    as_root chgrp kvm /dev/kvm && as_root chmod 660 /dev/kvm || log "could not open /dev/kvm to group kvm"
fi
# Whether the SYSTEM daemons run is asked of their sockets, never of `pgrep -x libvirtd`: a session
# daemon (an unprivileged user's `libvirtd`, as the migration tests start two of, and the `virtlogd`
# each of those spawns) has the same process name, and would keep the system one from being started.
# The timeouts cover a daemon that hangs: it is then taken as not running, and starting another one
# fails on its pid file, which is reported below.
system_libvirtd_answers() {   # its read-write socket, /run/libvirt/libvirt-sock; `uri` takes 20 ms
    timeout 5 virsh -c qemu:///system uri >/dev/null 2>&1
}
system_virtlogd_answers() {
    # Its admin socket, /run/libvirt/virtlogd-admin-sock, is root's only. Without root (and no
    # sudo), or without virt-admin: a live root-owned process in its pid file /run/virtlogd.pid (a
    # session virtlogd keeps its pid file under its own XDG_RUNTIME_DIR).
    if command -v virt-admin >/dev/null; then
        if [[ $EUID -eq 0 ]]; then
            timeout 5 virt-admin -c virtlogd:///system version >/dev/null 2>&1
            return
        elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo -n timeout 5 virt-admin -c virtlogd:///system version >/dev/null 2>&1
            return
        fi
    fi
    local pid
    pid="$(cat /run/virtlogd.pid 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == virtlogd \
        && "$(stat -c %u "/proc/$pid" 2>/dev/null)" == 0 ]]
}
virtlogd_up=0; libvirtd_up=0
system_virtlogd_answers && virtlogd_up=1
system_libvirtd_answers && libvirtd_up=1
if ((!virtlogd_up || !libvirtd_up)); then
    as_root mkdir -p /run/libvirt
fi
if ((!virtlogd_up)); then
    log "starting virtlogd"
    # It fails when a virtlogd that did not answer holds /run/virtlogd.pid: libvirtd is still
    # started (it needs virtlogd only to start guests).
    as_root virtlogd -d || log "warning: virtlogd -d failed (a system virtlogd that does not answer?)"
fi
started_libvirtd=0
if ((!libvirtd_up)); then
    log "starting libvirtd"
    # It fails when another system libvirtd holds /run/libvirtd.pid (one still starting, or hung):
    # then wait for that one below, which says so if it never answers.
    as_root libvirtd -d \
        || log "libvirtd -d failed (another system libvirtd holds /run/libvirtd.pid?); waiting for it"
    started_libvirtd=1
fi
if ((started_libvirtd)); then
    wait_for 20 "libvirtd (virsh -c qemu:///system version)" virsh -c qemu:///system version
else
    # `virsh version` takes 3-4 s on every call here; `uri` also needs the QEMU driver, in 20 ms.
    wait_for 20 "libvirtd (virsh -c qemu:///system uri)" virsh -c qemu:///system uri
fi
if netinfo="$(virsh -c qemu:///system net-info default 2>/dev/null)"; then
    if ! grep -Eq '^Active:[[:space:]]+yes' <<<"$netinfo"; then
        log "starting the libvirt network 'default'"
        virsh -c qemu:///system net-start default >/dev/null 2>&1 \
            || log "warning: could not start the libvirt network 'default'"
    fi
    virsh -c qemu:///system net-autostart default >/dev/null 2>&1 || true
fi
log "libvirt is up"

# --- Redis ------------------------------------------------------------------------------------
if [[ -n "${REDIS_URL:-}" ]]; then
    log "using REDIS_URL from the environment; not starting a private Redis"
else
    sock="$STATE/redis.sock"
    pidfile="$STATE/redis.pid"
    ((${#sock} < 100)) || die "the Redis socket path is too long for a UNIX socket: $sock"
    redis_ping() {
        if command -v redis-cli >/dev/null; then
            [[ "$(redis-cli -s "$sock" ping 2>/dev/null)" == PONG ]]
        else
            [[ -S "$sock" && -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
        fi
    }
    if redis_ping; then
        log "private Redis already running on $sock"
    else
        command -v redis-server >/dev/null || die "redis-server not found: run scripts/setup.sh first"
        # A pid file whose process still lives but does not answer: leave it, do not start a twin.
        if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
            && [[ "$(cat "/proc/$(cat "$pidfile")/comm" 2>/dev/null)" == redis-server* ]]; then
            wait_for 10 "the private Redis (pid $(cat "$pidfile"))" redis_ping
        else
            rm -f "$sock" "$pidfile"
            log "starting a private Redis on $sock"
            # umask 077: its log and pid files are the owner's only, like the socket.
            (umask 077 && redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 \
                --save "" --appendonly no --daemonize yes \
                --pidfile "$pidfile" --logfile "$STATE/redis.log" --dir "$STATE" >/dev/null)
            wait_for 10 "the private Redis (see $STATE/redis.log)" redis_ping
        fi
    fi
    export REDIS_URL="unix://$sock"
fi

# --- PostgreSQL (tests only) ------------------------------------------------------------------
if ((TEST)); then
    PGURL_ADMIN="postgresql://postgres@127.0.0.1:5432/postgres"
    pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }
    pg_sql() {   # run SQL as the postgres role over TCP, as the tests will
        PGCONNECT_TIMEOUT=5 psql "$PGURL_ADMIN" -X -q -v ON_ERROR_STOP=1 -Atc "$1"
    }
    if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null \
        || { ! pg_up && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }; then
        log "installing PostgreSQL"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends postgresql
    fi
    if ! pg_up; then
        # A local Debian cluster: create it if there is none, then start it.
        ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
        if [[ -z "$ver" || ! -d "/etc/postgresql/$ver/main" ]]; then
            ver="$(ls /usr/lib/postgresql | sort -V | tail -1)"
            log "creating the PostgreSQL $ver cluster 'main'"
            as_root pg_createcluster "$ver" main
        fi
        log "starting PostgreSQL $ver/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start \
            || log "pg_ctlcluster start failed (already starting?); waiting"
        wait_for 30 "PostgreSQL at 127.0.0.1:5432" pg_up
    fi
    if ! pg_sql 'select 1' >/dev/null 2>&1; then
        # Most likely password auth on loopback: trust the postgres role there (dev/CI only).
        ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
        hba="/etc/postgresql/$ver/main/pg_hba.conf"
        [[ -n "$ver" && -f "$hba" ]] \
            || die "cannot connect to $PGURL_ADMIN and there is no local cluster to configure"
        if ! grep -q '# webvirt tests' "$hba"; then
            log "allowing the postgres role on loopback without a password ($hba)"
            as_root sed -i '1i host all postgres 127.0.0.1/32 trust  # webvirt tests\nhost all postgres ::1/128 trust  # webvirt tests' "$hba"
        fi
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
        sleep 0.5
        pg_sql 'select 1' >/dev/null || die "still cannot connect to $PGURL_ADMIN"
    fi
    if [[ "$(pg_sql "select 1 from pg_database where datname = 'webvirt'")" != 1 ]]; then
        log "creating database webvirt"
        pg_sql 'create database webvirt' >/dev/null
    fi
    log "PostgreSQL is up at 127.0.0.1:5432"
fi

# --- hand the environment over ----------------------------------------------------------------
(
    umask 077  # before the file is opened: the redirection below is inside this subshell
    {
        echo "# Written by scripts/services.sh on every run; source it: . .state/env"
        printf "export REDIS_URL=%q\n" "$REDIS_URL"
    } >"$STATE/env.tmp"
)
mv "$STATE/env.tmp" "$STATE/env"
grep '^export ' "$STATE/env"
