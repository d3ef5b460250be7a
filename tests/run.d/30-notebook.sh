#!/usr/bin/env bash
# Executes notebooks/tutorial.ipynb top to bottom with nbmake (a smaller table through the notebook's mocked
# parameters cell) and checks that the committed notebook carries no outputs.
#
#   bash tests/run.d/30-notebook.sh          (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay); the notebook starts its own server from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin
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

run_pytest "notebook" "$PY" --nbmake --nbmake-timeout=600 notebooks/tutorial.ipynb
