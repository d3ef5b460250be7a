#!/usr/bin/env bash
# The reliability scripts' short modes, so they cannot rot: a kill -9 loop over a durable server (8 cycles: kills
# during uploads, appends, spills and idle; no acknowledged upload may be lost) and a 32-client mixed-load soak
# (15 s; no lost upload, no unexpected error code, the server stops cleanly). Their long modes are documented in
# docs/reliability.md.
#
#   bash tests/run.d/70-reliability.sh        (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay). Fails if either script fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
started=$(date +%s)
failed=0
for script in "benches/kill9.py --short" "benches/soak.py --short"; do
    echo "--- $script"
    # shellcheck disable=SC2086 # the script and its flag are two words on purpose
    if ! "$PYTHON" $script; then
        echo "$script failed" >&2
        failed=$((failed + 1))
    fi
done
echo "reliability short modes took $(( $(date +%s) - started ))s"
echo "reliability: $(( 2 - failed )) passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    exit 1
fi
