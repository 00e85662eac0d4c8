#!/usr/bin/env bash
# Install what the tests need into .venv-test and run the whole suite.
# Usage: ./run-tests.sh [pytest arguments]    e.g. ./run-tests.sh -k migrations -x
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${REDFLAG_TEST_VENV:-.venv-test}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "run-tests.sh: need Python 3.11 or newer as \$PYTHON (found: $("$PYTHON" --version 2>&1 || echo none))" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> Creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "==> Installing redflag[appliance,agent,docker,smart,test] into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[appliance,agent,docker,smart,test]'

echo "==> ruff check"
"$VENV/bin/ruff" check .
echo "==> pytest"
exec "$VENV/bin/python" -m pytest "$@"
