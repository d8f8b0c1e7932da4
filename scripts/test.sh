#!/usr/bin/env bash
# `make test`: the whole suite on SQLite and on PostgreSQL, as three test runs side by side.
#
# One run after another took 35 minutes on 2 cores; much of it is waiting (for guests to boot, for a
# browser, for events), so three runs at once keep both cores busy. They must not meet:
#   machine   PostgreSQL, then SQLite: the tests marked system, which use the machine's own libvirtd
#             (qemu:///system, or restarting it), and the browser tests (the runs end closer together).
#             The only run on that libvirtd.
#   sqlite    SQLite: everything else, on a private libvirt daemon's test driver (WEBVIRT_TEST_URI);
#             the migration tests start session daemons of their own.
#   postgres  PostgreSQL: the same without the qemu tests, on a second private daemon.
# Each run has its own database (SQLite file per process; PostgreSQL test_webvirt and
# test_webvirt_machine), its own Redis key prefix (per process, tests/conftest.py) and its own log.
# Browser and real-guest tests run on SQLite only: they test the pages and QEMU, not SQL.
#
# Usage: bash scripts/test.sh [pytest args...]   (extra args go to every run, e.g. -x)
# Prints each run's log once all have ended, then one line per run; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
pg="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/webvirt}"
[[ "$pg" != *\?* ]] || { echo "TEST_DATABASE_URL must end with the database name (no ?options)" >&2; exit 2; }
logs=.state/test-logs
rm -rf "$logs"
mkdir -p "$logs"

bash scripts/services.sh --test >/dev/null
. ./.state/env
export WEBVIRT_TEST_GUEST="$PWD/.state/guest/tiny.qcow2"
sh tests/guest/build.sh "$WEBVIRT_TEST_GUEST"

# The private daemons live as long as this script (tests/driver_daemons.py).
"$PY" -m tests.driver_daemons "$logs/driver-uris" >"$logs/driver-daemons.log" 2>&1 &
daemons=$!
pids=()
stop_all() {
    for pid in "${pids[@]}" "$daemons"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
for _ in $(seq 1 300); do
    [[ -s "$logs/driver-uris" ]] && break
    kill -0 "$daemons" 2>/dev/null || break
    sleep 0.2
done
[[ -s "$logs/driver-uris" ]] || { echo "the private libvirt daemons did not start:" >&2; cat "$logs/driver-daemons.log" >&2; exit 1; }
mapfile -t uris <"$logs/driver-uris"

# PostgreSQL's short part first: each part begins by restarting the machine's libvirtd
# (tests/events/test_libvirtd_restart.py), and the other runs' few tests that name a bare scheme
# (foo:///x) reach that libvirtd too; both restarts then come in the first minute, not near the end.
run_machine() {
    local rc=0
    DATABASE_URL="${pg}_machine" "$PY" -m pytest -q tests -m "system and not qemu and not browser" "$@" || rc=1
    env -u DATABASE_URL "$PY" -m pytest -q tests -m "system or browser" "$@" || rc=1
    return "$rc"
}
run_sqlite() {
    env -u DATABASE_URL WEBVIRT_TEST_URI="${uris[0]}" "$PY" -m pytest -q tests -m "not system and not browser" "$@"
}
run_postgres() {
    DATABASE_URL="$pg" WEBVIRT_TEST_URI="${uris[1]}" "$PY" -m pytest -q tests -m "not system and not browser and not qemu" "$@"
}

names=(machine sqlite postgres)
declare -A started
for name in "${names[@]}"; do
    echo "== $name: started $(date -u +%H:%M:%S), log $logs/$name.log"
    started[$name]=$(date +%s)
    ( rc=0; "run_$name" "$@" >"$logs/$name.log" 2>&1 || rc=$?; echo "$rc $(date +%s)" >"$logs/$name.rc" ) &
    pids+=($!)
done
wait "${pids[@]}" || true
pids=()

failed=""
summary=()
for name in "${names[@]}"; do
    echo "== $name (log $logs/$name.log)"
    cat "$logs/$name.log"
    read -r rc ended <"$logs/$name.rc" || { rc=1; ended=$(date +%s); }
    ((rc == 0)) || failed="$failed $name"
    summary+=("$name: $( ((rc == 0)) && echo passed || echo FAILED) in $((ended - started[$name])) s")
done
echo "== runs:"
printf '   %s\n' "${summary[@]}"
if [[ -n "$failed" ]]; then echo "== FAILED:$failed"; exit 1; fi
echo "== all tests passed on SQLite and PostgreSQL"
