#!/usr/bin/env bash
# The benchmark's quick mode, so the benchmark code cannot rot: 200k rows, one run of every measurement, against
# flightbay, the pyarrow reference server and the loopback ceiling (benches/run.sh --quick).
#
#   bash tests/run.d/60-bench-quick.sh        (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay); the figures of a debug build mean nothing,
# only that every measurement ran and returned the right data. Fails if any measurement failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
export PYTHON
if [ -s benches/requirements.txt ]; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
trap 'exit 130' INT TERM
started=$(date +%s)
rc=0
bash benches/run.sh --quick >"$log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    cat "$log"
else
    grep -E '^  [a-z_0-9]+ ' "$log" || true
fi
# One line per measurement: "  name  0.1s  ok", "... skipped (why)" or "... FAILED: why".
passed=$(grep -cE '^  [a-z_0-9]+ +[0-9.]+s  ok$' "$log" || true)
failed=$(grep -cE '^  [a-z_0-9]+ +[0-9.]+s  FAILED' "$log" || true)
skipped=$(grep -cE '^  [a-z_0-9]+ +[0-9.]+s  skipped' "$log" || true)
echo "bench quick mode took $(( $(date +%s) - started ))s"
echo "bench: $passed passed, $failed failed, $skipped skipped"
if [ "$rc" -ne 0 ]; then
    echo "benches/run.sh --quick failed with exit code $rc" >&2
    exit "$rc"
fi
if [ "$passed" -eq 0 ]; then
    echo "benches/run.sh --quick measured nothing" >&2
    exit 1
fi
