#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions and prints one line per target:
#   "<target> <executions> runs, <seconds>s, <corpus entries> in corpus: clean" (or the crash file).
#
#   bash fuzz/run.sh [RUNS] [TARGET...]      RUNS defaults to 1000000; targets default to all of them
#
# Needs `cargo install cargo-fuzz --locked`. Builds with `--sanitizer none`, which works on stable Rust (set
# FUZZ_TOOLCHAIN=nightly to use nightly and cargo-fuzz's default AddressSanitizer instead). Corpora grow in
# fuzz/corpus/<target> (not committed); crashes land in fuzz/artifacts/<target> and fail the run.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-1000000}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(ticket command action reference resample_every grpc_frame ipc_split do_put_decode)
fi
TOOLCHAIN=${FUZZ_TOOLCHAIN:-stable}
SANITIZER=(--sanitizer none)
if [ "$TOOLCHAIN" != stable ]; then
    SANITIZER=()
fi
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 1
}
cargo "+$TOOLCHAIN" fuzz build "${SANITIZER[@]}"
failed=0
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log=$(mktemp)
    started=$(date +%s)
    rc=0
    cargo "+$TOOLCHAIN" fuzz run "${SANITIZER[@]}" "$target" "corpus/$target" -- \
        -runs="$RUNS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    seconds=$(( $(date +%s) - started ))
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "$target $runs runs, ${seconds}s, $corpus in corpus: clean"
    else
        failed=1
        echo "$target FAILED after ${seconds}s (exit $rc):"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20
    fi
    rm -f "$log"
done
exit "$failed"
