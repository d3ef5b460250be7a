#!/usr/bin/env bash
# Go round trips with the stock arrow-go Flight client (clients/go), each test against a flightbay of its own.
#
#   bash tests/run.d/40-go.sh        (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay). Modules come from the Go module proxy into Go's
# default module cache (~/go/pkg/mod), so only the first run on a machine downloads them. Prints the test counts and
# fails if any test fails or none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin

find_go
command -v go >/dev/null || { echo "go not found: clients/go needs Go >= 1.25" >&2; exit 1; }

cd clients/go
go mod download
go vet ./...

log=$(mktemp)
trap 'rm -f "$log"' EXIT
trap 'exit 130' INT TERM
rc=0
go test -count=1 -v ./... >"$log" 2>&1 || rc=$?
# Top-level results only: the tests have no subtests, and these lines start in column 0.
passed=$(grep -c '^--- PASS' "$log" || true)
failed=$(grep -c '^--- FAIL' "$log" || true)
skipped=$(grep -c '^--- SKIP' "$log" || true)
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    cat "$log"
else
    grep -E '^(--- |ok )' "$log"
fi
echo "go: $passed passed, $failed failed, $skipped skipped"
if [ "$rc" -ne 0 ]; then
    echo "go test failed with exit code $rc" >&2
    exit "$rc"
fi
if [ "$passed" -eq 0 ]; then
    echo "go test ran no tests" >&2
    exit 1
fi
