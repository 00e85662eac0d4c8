#!/usr/bin/env bash
# build-image.sh: build the RedFlag appliance's container image from this checkout.
#
#   1. the wheelhouse, on this host: RedFlag's wheel built from the checkout and the
#      wheels of its dependencies for the image's Python (3.11 on glibc, this machine's
#      architecture). The only step that needs the package index.
#   2. `docker build --network none`, with the wheelhouse as the whole build context:
#      the image installs from those wheels only, and nothing else of the checkout (a
#      ./data dir, a key file, a virtual environment) can reach it.
#
# Run it again after `git pull` to build the new version; docs/install.md, "In a
# container", says how to upgrade a running appliance with it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DOCKER="${DOCKER:-docker}"

TAG="redflag-appliance"
BASE_IMAGE="python:3.11-slim-bookworm"
IMAGE_PYTHON="3.11"
WHEELHOUSE="$REPO/build/wheelhouse"
MAKE_WHEELS=1
BUILD=1

usage() {
    cat <<EOF
Usage: packaging/build-image.sh [OPTIONS]

Build the RedFlag appliance's container image: first a wheelhouse on this host
(the only step that needs the Python package index), then 'docker build' from it
without network. Tags NAME:VERSION and NAME:latest.

  --tag NAME           image name (default: $TAG)
  --base-image IMAGE   a Debian-like image whose python3 is Python $IMAGE_PYTHON with its
                       venv module (default: $BASE_IMAGE)
  --python X.Y         the base image's Python version, for the wheels (default: $IMAGE_PYTHON)
  --wheelhouse DIR     where the wheels are made or found (default: build/wheelhouse)
  --wheels-only        make the wheelhouse and stop (copy it to a machine whose
                       Docker cannot reach the index, then use --no-wheels there)
  --no-wheels          build from the wheelhouse as it is
  -h, --help           show this help

Environment: PYTHON (the pip to use, default python3), DOCKER (default docker).

Examples:
  packaging/build-image.sh
  packaging/build-image.sh --base-image registry.lan/python:3.11-slim-bookworm
  packaging/build-image.sh --wheels-only --wheelhouse /mnt/usb/redflag-wheels
EOF
}

die() {
    printf 'build-image.sh: error: %s\n' "$*" >&2
    exit 1
}
usage_error() {
    printf 'build-image.sh: error: %s (see packaging/build-image.sh --help)\n' "$*" >&2
    exit 2
}
say() { printf '==> %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag | --base-image | --python | --wheelhouse)
            [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
            case "$1" in
                --tag) TAG="$2" ;;
                --base-image) BASE_IMAGE="$2" ;;
                --python) IMAGE_PYTHON="$2" ;;
                --wheelhouse) WHEELHOUSE="$2" ;;
            esac
            shift 2
            ;;
        --wheels-only) BUILD=0 && shift ;;
        --no-wheels) MAKE_WHEELS=0 && shift ;;
        -h | --help) usage && exit 0 ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done
[[ "$IMAGE_PYTHON" =~ ^3\.[0-9]+$ ]] || usage_error "--python takes a version such as 3.11"
[[ $MAKE_WHEELS == 1 || $BUILD == 1 ]] || usage_error "--wheels-only and --no-wheels exclude each other"

# Wheels for manylinux up to glibc 2.36 (Debian 12); pip matches --platform exactly,
# so every older manylinux level is named too.
manylinux_platforms() {
    local arch level
    arch="$(uname -m)"
    for level in $(seq 5 36); do
        printf -- '--platform manylinux_2_%s_%s\n' "$level" "$arch"
    done
}

# The checkout without virtual environments, data dirs and build leftovers: building
# in place would leave build/ and *.egg-info behind (install.sh does the same).
stage_source() {
    local stage="$1" entry
    for entry in "$REPO"/*; do
        case "${entry##*/}" in
            build | dist | data | *.egg-info | __pycache__) continue ;;
        esac
        [[ -e "$entry/pyvenv.cfg" || -e "$entry/redflag.db" ]] && continue
        cp -a "$entry" "$stage/"
    done
}

make_wheelhouse() {
    local stage
    mkdir -p "$WHEELHOUSE"
    rm -f "$WHEELHOUSE"/*.whl
    stage="$(mktemp -d "${TMPDIR:-/tmp}/redflag-image.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf -- '$stage'" EXIT
    stage_source "$stage"
    say "Building RedFlag's wheel into $WHEELHOUSE"
    # A fixed timestamp makes the wheel the same bytes when the code is the same, so
    # Docker's layer cache is reused on a rebuild.
    SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" "$PYTHON" -m pip wheel --quiet \
        --disable-pip-version-check --no-deps --ignore-requires-python \
        --wheel-dir "$WHEELHOUSE" "$stage" ||
        die "pip could not build RedFlag's wheel (messages above)"
    say "Fetching the dependencies' wheels for Python $IMAGE_PYTHON on $(uname -m)"
    # shellcheck disable=SC2046  # one word per option
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$WHEELHOUSE" \
        --only-binary=:all: --implementation cp --python-version "$IMAGE_PYTHON" \
        --abi "cp${IMAGE_PYTHON/./}" --abi abi3 --abi none $(manylinux_platforms) \
        "$WHEELHOUSE"/redflag-*.whl ||
        die "pip could not fetch the dependencies' wheels; it needs the package index (messages above)"
}

if [[ $MAKE_WHEELS == 1 ]]; then
    make_wheelhouse
fi
shopt -s nullglob
wheels=("$WHEELHOUSE"/redflag-*.whl)
[[ ${#wheels[@]} == 1 ]] ||
    die "expected one RedFlag wheel in $WHEELHOUSE, found ${#wheels[@]}; run without --no-wheels"
VERSION="$(basename "${wheels[0]}" | cut -d- -f2)"
if [[ $BUILD == 0 ]]; then
    say "Wheelhouse ready: $WHEELHOUSE (RedFlag $VERSION)"
    exit 0
fi

command -v "$DOCKER" >/dev/null 2>&1 || die "'$DOCKER' not found; install Docker (or set DOCKER=podman)"
say "Building $TAG:$VERSION from $BASE_IMAGE"
"$DOCKER" build --network none --file "$REPO/packaging/Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "REDFLAG_VERSION=$VERSION" \
    --tag "$TAG:$VERSION" --tag "$TAG:latest" "$WHEELHOUSE" ||
    die "docker build failed (messages above)"
say "Built $TAG:$VERSION (also tagged $TAG:latest); docs/install.md, 'In a container', says how to run it"
