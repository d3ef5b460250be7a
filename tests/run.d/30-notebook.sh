#!/usr/bin/env bash
# Executes notebooks/tutorial.ipynb top to bottom with nbmake (a smaller table through the notebook's mocked
# parameters cell) and checks that the committed notebook carries no outputs.
#
#   bash tests/run.d/30-notebook.sh          (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay); the notebook starts its own server from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
FLIGHTBAY_BIN=$(realpath "${FLIGHTBAY_BIN:-target/ci/flightbay}")
export FLIGHTBAY_BIN
test -x "$FLIGHTBAY_BIN" || { echo "flightbay binary not found at $FLIGHTBAY_BIN; run cargo build --profile ci" >&2; exit 1; }
PY=.venv/bin/python
test -x "$PY" || { echo "$PY not found; tests/run_all.sh creates it" >&2; exit 1; }

# Already satisfied after 20-python-client.sh; needed when this script runs alone.
"$PY" -m pip install --quiet --disable-pip-version-check -r clients/python/requirements-dev.txt -e clients/python

"$PY" - notebooks/tutorial.ipynb <<'PYEOF'
import sys
import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
if dirty:
    sys.exit(f"{sys.argv[1]}: cells {dirty} carry outputs; commit the notebook with outputs stripped")
PYEOF

log=$(mktemp)
# Temporary files of the tests (server data dirs, multiprocessing sockets) go to a directory removed at exit, even
# when a test or the notebook's kernel dies before cleaning up after itself.
scratch=$(mktemp -d)
trap 'rm -rf "$log" "$scratch"' EXIT
trap 'exit 130' INT TERM
rc=0
TMPDIR="$scratch" "$PY" -m pytest -p no:cacheprovider -q -rs --nbmake --nbmake-timeout=600 notebooks/tutorial.ipynb 2>&1 | tee "$log" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "notebook: pytest collected nothing" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "notebook: pytest failed with exit code $rc" >&2
    exit "$rc"
fi
if tail -n 1 "$log" | grep -q 'skipped'; then
    echo "notebook: the notebook was skipped" >&2
    exit 1
fi
