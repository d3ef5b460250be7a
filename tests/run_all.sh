#!/usr/bin/env bash
# Runs every flightbay test: Rust (fmt, clippy, unit + integration), Python (server tests with stock pyarrow,
# the client package, the tutorial notebook), Go and Java round trips, and the benchmark's quick mode.
#
#   bash tests/run_all.sh
#
# Builds with the `ci` cargo profile (debug, no debuginfo for dependencies), creates .venv on first use, and fails
# loudly when any suite fails or runs no tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${FLIGHTBAY_PROFILE:-ci}
export FLIGHTBAY_BIN="$ROOT/target/$PROFILE/flightbay"
export FLIGHTBAY_LOG=${FLIGHTBAY_LOG:-warn}
started=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - started ))s)"; }

step "rust: fmt"
cargo fmt --check

step "rust: clippy"
cargo clippy --profile "$PROFILE" --all-targets -- -D warnings

step "rust: tests"
cargo test --profile "$PROFILE"
test -x "$FLIGHTBAY_BIN"

step "python: environment"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# The server tests also check the Python client against TLS and auth; its own suite runs in run.d.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e clients/python

# pytest exits 5 when it collects nothing; treat that as a failure like any other.
run_pytest() {
    local rc=0
    .venv/bin/python -m pytest "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "pytest $* failed with exit code $rc" >&2
        exit "$rc"
    fi
}

step "python: server tests with stock pyarrow"
run_pytest -q tests/python

for extra in tests/run.d/*.sh; do
    [ -e "$extra" ] || continue
    step "$(basename "$extra" .sh)"
    bash "$extra"
done

step "all tests passed in $(( $(date +%s) - started ))s"
