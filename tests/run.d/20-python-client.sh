#!/usr/bin/env bash
# The flightbay Python package (clients/python): editable install, then its pytest suite against the real server.
#
#   bash tests/run.d/20-python-client.sh     (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay); .venv is the one tests/run_all.sh creates.
# clients/python/requirements-dev.txt includes torch from PyPI with its CUDA runtime wheels (about 5 GB unpacked);
# the install time is printed. Fails if any test fails or is skipped, or if none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
FLIGHTBAY_BIN=$(realpath "${FLIGHTBAY_BIN:-target/ci/flightbay}")
export FLIGHTBAY_BIN
test -x "$FLIGHTBAY_BIN" || { echo "flightbay binary not found at $FLIGHTBAY_BIN; run cargo build --profile ci" >&2; exit 1; }
PY=.venv/bin/python
test -x "$PY" || { echo "$PY not found; tests/run_all.sh creates it" >&2; exit 1; }

started=$(date +%s)
"$PY" -m pip install --quiet --disable-pip-version-check -r clients/python/requirements-dev.txt
"$PY" -m pip install --quiet --disable-pip-version-check -e clients/python
echo "python client: dev requirements and package installed in $(( $(date +%s) - started ))s"

log=$(mktemp)
# Temporary files of the tests (server data dirs, multiprocessing sockets) go to a directory removed at exit, even
# when a test or the notebook's kernel dies before cleaning up after itself.
scratch=$(mktemp -d)
trap 'rm -rf "$log" "$scratch"' EXIT
trap 'exit 130' INT TERM
rc=0
TMPDIR="$scratch" "$PY" -m pytest -p no:cacheprovider -q -rs clients/python/tests 2>&1 | tee "$log" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "python client: pytest collected no tests" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "python client: pytest failed with exit code $rc" >&2
    exit "$rc"
fi
if tail -n 1 "$log" | grep -q 'skipped'; then
    echo "python client: tests were skipped; every test here must run (see the skip reasons above)" >&2
    exit 1
fi
