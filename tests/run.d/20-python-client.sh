#!/usr/bin/env bash
# The flightbay Python package (clients/python): editable install, then its pytest suite against the real server.
#
#   bash tests/run.d/20-python-client.sh     (from the repository root; tests/run_all.sh runs it)
#
# FLIGHTBAY_BIN names the server binary (default target/ci/flightbay); .venv is the one tests/run_all.sh creates.
# Before the tests, the package must pass mypy --strict, ruff check and ruff format --check (configured in
# clients/python/pyproject.toml).
# clients/python/requirements-dev.txt includes torch from PyPI with its CUDA runtime wheels (about 5 GB unpacked);
# the install time is printed. Fails if any test fails or is skipped, or if none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/run.d/common.bash
require_flightbay_bin
PY=.venv/bin/python
test -x "$PY" || { echo "$PY not found; tests/run_all.sh creates it" >&2; exit 1; }

started=$(date +%s)
"$PY" -m pip install --quiet --disable-pip-version-check -r clients/python/requirements-dev.txt
"$PY" -m pip install --quiet --disable-pip-version-check -e clients/python
echo "python client: dev requirements and package installed in $(( $(date +%s) - started ))s"

# Each check prints what it finds; the first one that finds anything stops the script.
(cd clients/python && "../../$PY" -m mypy && "../../$PY" -m ruff check . && "../../$PY" -m ruff format --check .) || {
    echo "python client: mypy or ruff found problems (see above)" >&2
    exit 1
}

run_pytest "python client" "$PY" clients/python/tests
