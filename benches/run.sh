#!/usr/bin/env bash
# The flightbay benchmark in one command: flightbay next to a pyarrow in-memory Flight server and the loopback TCP
# ceiling, all on 127.0.0.1, measured with the stock pyarrow client.
#
#   benches/run.sh            full run: cargo build --release, 10M rows, 1 warm-up + 5 runs per figure (~5 min
#                             after the build), then benches/budget_bench.py at a 1 GiB budget (~3 min); writes
#                             docs/bench-results/latest.json, docs/bench-results/budget.json and the results block
#                             of docs/benchmarks.md
#   benches/run.sh --quick    200k rows, one run, no build (uses target/ci/flightbay); writes only
#                             docs/bench-results/quick.json; what tests/run.d/60-bench-quick.sh runs
#
# Options: --rows N, --reps N (measured runs per figure). Environment: FLIGHTBAY_BIN (use this binary, skip the
# build), FLIGHTBAY_BENCH_COMMIT (the commit that binary was built from, for the record; default: HEAD), PYTHON (an
# interpreter with pyarrow and numpy; default .venv/bin/python, created from benches/requirements.txt when
# missing). Exits non-zero if any measurement fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0
rows=10000000
reps=5
warmup=1
latency_calls=1000
hit_calls=200
loop_runs=5
loop_seconds=2
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --rows) rows=$2; shift ;;
        --reps) reps=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    [ "$rows" = 10000000 ] && rows=200000
    reps=1 warmup=0 latency_calls=200 hit_calls=20 loop_runs=1 loop_seconds=0.5
fi

# --- the binary
if [ -n "${FLIGHTBAY_BIN:-}" ]; then
    BIN=$(realpath "$FLIGHTBAY_BIN")
    case "$(basename "$(dirname "$BIN")")" in
        release|ci|debug) build="$(basename "$(dirname "$BIN")") profile (FLIGHTBAY_BIN)" ;;
        *) build="binary given in FLIGHTBAY_BIN" ;;
    esac
elif [ "$quick" = 1 ]; then
    BIN=$ROOT/target/ci/flightbay
    build="ci profile"
else
    echo "run.sh: cargo build --release" >&2
    cargo build --release --bin flightbay
    BIN=$ROOT/target/release/flightbay
    build="release profile"
fi
test -x "$BIN" || { echo "run.sh: no flightbay binary at $BIN (build it, or set FLIGHTBAY_BIN)" >&2; exit 1; }
build="$("$BIN" --version 2>/dev/null || echo flightbay), $build"

# --- Python with pyarrow
PY=${PYTHON:-$ROOT/.venv/bin/python}
if ! "$PY" -c 'import pyarrow.flight, numpy' 2>/dev/null; then
    if [ -n "${PYTHON:-}" ]; then
        echo "run.sh: $PYTHON cannot import pyarrow.flight and numpy" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
    PY=$ROOT/.venv/bin/python
fi

# --- the loopback tool: iperf3 from the distribution when it can be had, else a Python socket copy
if ! command -v iperf3 >/dev/null && [ "$quick" = 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run.sh: installing iperf3 (apt-get install -y iperf3)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1 ||
        echo "run.sh: iperf3 could not be installed; measuring loopback with a Python socket copy" >&2
fi

# --- servers: started here, stopped on any exit
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flightbay-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do # up to 10 s each, then SIGKILL
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # wait_ready <file> <pid> <log> <what>
    for _ in $(seq 300); do # 30 s
        [ -s "$1" ] && return 0
        if ! kill -0 "$2" 2>/dev/null; then
            echo "run.sh: $4 exited before it was ready:" >&2
            cat "$3" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run.sh: $4 was not ready after 30 s" >&2
    return 1
}

FLIGHTBAY_LOG=warn "$BIN" --host 127.0.0.1 --port 0 --http-port off --ready-file "$tmp/flightbay.ready" \
    --data-dir "$tmp/flightbay-data" --memory-limit 8GiB --ephemeral >"$tmp/flightbay.log" 2>&1 &
fb_pid=$!
pids+=("$fb_pid")
"$PY" benches/reference_server.py --port 0 --ready-file "$tmp/reference.ready" >"$tmp/reference.log" 2>&1 &
ref_pid=$!
pids+=("$ref_pid")
wait_ready "$tmp/flightbay.ready" "$fb_pid" "$tmp/flightbay.log" flightbay
wait_ready "$tmp/reference.ready" "$ref_pid" "$tmp/reference.log" "the pyarrow reference server"

echo "run.sh: measuring the loopback ceiling" >&2
"$PY" benches/loopback.py --runs "$loop_runs" --seconds "$loop_seconds" --out "$tmp/loopback.json" >&2

if [ "$quick" = 1 ]; then
    out=(--json docs/bench-results/quick.json --markdown "$tmp/benchmarks.md")
    command="benches/run.sh --quick"
else
    out=(--json docs/bench-results/latest.json --markdown docs/benchmarks.md)
    command="benches/run.sh"
fi
"$PY" benches/flight_bench.py \
    --flightbay "grpc://$(head -n 1 "$tmp/flightbay.ready")" --flightbay-pid "$fb_pid" \
    --reference "grpc://$(cat "$tmp/reference.ready")" --reference-pid "$ref_pid" \
    --loopback "$tmp/loopback.json" --rows "$rows" --reps "$reps" --warmup "$warmup" \
    --latency-calls "$latency_calls" --hit-calls "$hit_calls" \
    --build "$build" --commit "${FLIGHTBAY_BENCH_COMMIT:-}" --command "$command" "${out[@]}"

# At the memory budget: its own servers (a 1 GiB budget; in quick mode 2.75 tables), the same table.
if [ "$quick" = 1 ]; then
    "$PY" benches/budget_bench.py --bin "$BIN" --quick --json "$tmp/budget.json"
else
    "$PY" benches/budget_bench.py --bin "$BIN" --rows "$rows" --json docs/bench-results/budget.json
fi
