#!/usr/bin/env bash
# The whole test suite twice in a row (SQLite, every tier) while stress-ng keeps both cores busy.
#
# The suite's waits and limits must hold on a loaded CI machine, not only on an idle one; this is
# how we check that. Usage: bash scripts/soak.sh [RUNS] [pytest args...]   (RUNS defaults to 2; the
# pytest args default to the whole suite, `tests`)
# Prints one line per run (passed/failed, seconds) and exits 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-2}"
shift || true
[[ $# -gt 0 ]] || set -- tests

bash scripts/setup.sh >/dev/null
bash scripts/services.sh --test >/dev/null
. ./.state/env
export WEBVIRT_TEST_GUEST="$PWD/.state/guest/tiny.qcow2"
sh tests/guest/build.sh "$WEBVIRT_TEST_GUEST"

# Two CPU hogs at normal priority, as another job on a shared CI machine would be.
stress-ng --cpu 2 --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true' EXIT

failed=0
results=()
for run in $(seq 1 "$runs"); do
    echo "== soak run $run of $runs (stress-ng --cpu 2), $(date -u +%H:%M:%S)"
    start=$(date +%s)
    if env -u DATABASE_URL .venv/bin/python -m pytest -q "$@"; then outcome=passed; else outcome=failed; failed=1; fi
    results+=("run $run: $outcome in $(( $(date +%s) - start )) s")
done

echo "== soak under stress-ng --cpu 2:"
printf '   %s\n' "${results[@]}"
exit "$failed"
