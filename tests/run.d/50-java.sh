#!/usr/bin/env bash
# Java round trips with the stock Arrow Java Flight client (clients/java), plus the cross-language check: one flightbay
# is started here, the Go test names a derived flight "go_shared" on it, and the Java test reads it by name through
# FLIGHTBAY_URI. The other Java tests start servers of their own.
#
#   bash tests/run.d/50-java.sh      (from the repository root; tests/run_all.sh runs it after 40-go.sh)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay). Maven downloads plugins and dependencies from
# Maven Central into ~/.m2 and Go modules go to ~/go/pkg/mod, so only the first run on a machine downloads them.
# Prints the test counts and fails if any test fails, is skipped, or none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin

find_go
for tool in go mvn java; do
    command -v "$tool" >/dev/null || { echo "$tool not found: clients/java needs JDK >= 17 and Maven, and the shared-flight check needs Go >= 1.25" >&2; exit 1; }
done

dir=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$FLIGHTBAY_BIN" --host 127.0.0.1 --port 0 --http-port off --ready-file "$dir/ready" --data-dir "$dir/data" --memory-limit 1GiB \
    >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1500); do
    [ -e "$dir/ready" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$dir/server.log" >&2
        echo "flightbay exited before it was ready" >&2
        exit 1
    fi
    sleep 0.02
done
[ -e "$dir/ready" ] || { echo "flightbay did not start within 30s" >&2; exit 1; }
export FLIGHTBAY_URI="grpc://$(head -n 1 "$dir/ready")"

echo "shared server at $FLIGHTBAY_URI: the Go client creates go_shared"
rc=0
(cd clients/go && go test -count=1 -v -run '^TestSharedFlight$' ./...) >"$dir/go.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || ! grep -q '^--- PASS: TestSharedFlight' "$dir/go.log"; then
    cat "$dir/go.log" "$dir/server.log"
    echo "the Go client could not create go_shared (exit code $rc)" >&2
    exit 1
fi

cd clients/java
rm -rf target/surefire-reports
rc=0
# Maven 3.8 prints stray colour resets even in batch mode; strip them (pipefail keeps mvn's exit code).
mvn -q -B test 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' || rc=$?

# Surefire writes one TEST-<class>.xml per test class; add up the counts of their <testsuite> elements.
read -r tests failures errors skipped < <(
    cat target/surefire-reports/TEST-*.xml 2>/dev/null | awk '
        /<testsuite / {
            for (i = 1; i <= NF; i++) {
                if (split($i, kv, "=") == 2) { gsub(/[">]/, "", kv[2]); n[kv[1]] += kv[2] }
            }
        }
        END { printf "%d %d %d %d\n", n["tests"], n["failures"], n["errors"], n["skipped"] }'
)
passed=$((tests - failures - errors - skipped))
echo "java: $passed passed, $((failures + errors)) failed, $skipped skipped"
if [ "$rc" -ne 0 ]; then
    cat "$dir/server.log"
    echo "mvn test failed with exit code $rc" >&2
    exit "$rc"
fi
if [ "$tests" -eq 0 ]; then
    echo "mvn test ran no tests" >&2
    exit 1
fi
if [ "$skipped" -ne 0 ]; then
    echo "$skipped Java tests were skipped; with FLIGHTBAY_URI set every test must run" >&2
    exit 1
fi
