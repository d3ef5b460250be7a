# Shared by the tests/run.d/*.sh scripts (sourced, never run; tests/run_all.sh runs only *.sh). Each script sources
# it after `set -euo pipefail` and `cd` to the repository root.

# FLIGHTBAY_BIN: the server binary the suites run (default target/ci/flightbay), exported as an absolute path.
require_flightbay_bin() {
    FLIGHTBAY_BIN=$(realpath "${FLIGHTBAY_BIN:-target/ci/flightbay}")
    export FLIGHTBAY_BIN
    test -x "$FLIGHTBAY_BIN" || {
        echo "flightbay binary not found at $FLIGHTBAY_BIN; run cargo build --profile ci" >&2
        exit 1
    }
}

# Go from PATH, or where the official Go release installs (not always on PATH).
find_go() {
    if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
        export PATH="$PATH:/usr/local/go/bin"
    fi
}

# run_pytest LABEL PYTHON ARGS...: pytest with temporary files in a directory removed at exit (even when a test or a
# notebook kernel dies before cleaning up after itself); fails when pytest fails, collects nothing, or skips anything.
run_pytest() {
    local label=$1 py=$2
    shift 2
    local log scratch rc=0
    log=$(mktemp)
    scratch=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: the paths are local to this function
    trap "rm -rf '$log' '$scratch'" EXIT
    trap 'exit 130' INT TERM
    TMPDIR="$scratch" "$py" -m pytest -p no:cacheprovider -q -rs "$@" 2>&1 | tee "$log" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "$label: pytest collected no tests" >&2
        exit 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "$label: pytest failed with exit code $rc" >&2
        exit "$rc"
    fi
    if tail -n 1 "$log" | grep -q 'skipped'; then
        echo "$label: tests were skipped; every test here must run (see the skip reasons above)" >&2
        exit 1
    fi
}
