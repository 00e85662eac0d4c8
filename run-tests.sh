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

# Tests drive real tools from Debian packages: chromium through Playwright (which cannot
# download its own browsers here), debootstrap for Debian 11/12 roots (the agent on
# Python 3.9, the installer, the container's base image), Docker's engine (the
# appliance's image, built and run by a dockerd of the tests' own).
# Install what is missing when we are root; otherwise say what to install.
NEEDED_DEBS=""
[ -n "${REDFLAG_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || NEEDED_DEBS="$NEEDED_DEBS chromium"
command -v debootstrap >/dev/null 2>&1 || NEEDED_DEBS="$NEEDED_DEBS debootstrap"
# visudo checks packaging/redflag-agent.sudoers; faketime gives an agent a skewed clock.
command -v visudo >/dev/null 2>&1 || NEEDED_DEBS="$NEEDED_DEBS sudo"
command -v faketime >/dev/null 2>&1 || NEEDED_DEBS="$NEEDED_DEBS faketime"
{ command -v dockerd && command -v docker; } >/dev/null 2>&1 || NEEDED_DEBS="$NEEDED_DEBS docker.io"
if [ -n "$NEEDED_DEBS" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> Installing Debian packages the tests run:$NEEDED_DEBS"
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086  # a list of package names
        apt-get install -y -q $NEEDED_DEBS >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q $NEEDED_DEBS >/dev/null; }
    else
        echo "run-tests.sh: some tests need:$NEEDED_DEBS; install them (sudo apt-get install$NEEDED_DEBS)" \
            "or those tests are skipped" >&2
    fi
fi

echo "==> ruff check"
"$VENV/bin/ruff" check .
# Most tests wait on real processes, sockets and a browser rather than compute, so four
# workers (each test file on one of them) finish well before one would.
WORKERS="${REDFLAG_TEST_WORKERS:-4}"
echo "==> pytest ($WORKERS workers; REDFLAG_TEST_WORKERS=1 runs them one by one)"
if [ "$WORKERS" -gt 1 ]; then
    exec "$VENV/bin/python" -m pytest -n "$WORKERS" --dist loadfile "$@"
fi
exec "$VENV/bin/python" -m pytest "$@"
