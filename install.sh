#!/usr/bin/env bash
# install.sh: install the RedFlag appliance from this checkout and start it.
#
# Two modes (./install.sh --help explains both, with examples):
#   user mode (default)  a virtual environment and a data dir of your own, then
#                        `redflag-appliance serve` in the foreground; no root needed.
#   --system (root)      /opt/redflag/venv, data in /var/lib/redflag owned by the
#                        `redflag` system user, config in /etc/redflag, and the
#                        systemd service redflag-appliance. Re-running it upgrades in
#                        place, after a backup of the database taken with the old code.
#
# Environment:
#   PYTHON            the interpreter to build the virtual environment with
#                     (default: python3); it must be Python 3.11 or newer.
#   REDFLAG_DATA_DIR  user mode only: the data dir when --data-dir is not given.
#
# Promise: this script never deletes, moves or overwrites a data dir or a database,
# in any mode and on any error. It only creates what is missing and replaces code.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
MIN_PYTHON="3.11"

SERVICE="redflag-appliance"
SYSTEM_USER="redflag"
SYSTEM_PREFIX="/opt/redflag"
SYSTEM_VENV="$SYSTEM_PREFIX/venv"
SYSTEM_DATA="/var/lib/redflag"
SYSTEM_CONFIG="/etc/redflag"
# Encrypts the signing keys at rest; outside the data dir on purpose (a copy of the data
# or of a backup alone does not unlock them). The unit sets the same path.
SYSTEM_KEY_FILE="$SYSTEM_CONFIG/master.key"
SYSTEM_UNIT_DIR="/etc/systemd/system"
SYSTEM_HOST="127.0.0.1"
SYSTEM_PORT="8080"

usage() {
    cat <<EOF
Usage: ./install.sh [OPTIONS]

Install the RedFlag appliance from this checkout ($REPO).

User mode (the default; no root needed) creates a Python virtual environment,
installs RedFlag into it, creates the data dir and starts the appliance in the
foreground. Ctrl-C stops it; run the same command again to start it again (the
install steps are quick once done, and the data is kept).

  --venv DIR       virtual environment to create or reuse (default: $REPO/.venv)
  --data-dir DIR   where the database and backups live
                   (default: \$REDFLAG_DATA_DIR, else $REPO/data)
  --host ADDR      address to listen on (default: 127.0.0.1, this machine only;
                   0.0.0.0 listens on every interface)
  --port PORT      TCP port (default: 8080)
  --no-start       install only, then print the command that starts it

System mode (--system, as root) installs RedFlag as a systemd service:

  code     $SYSTEM_VENV
  data     $SYSTEM_DATA (mode 0700, owned by the '$SYSTEM_USER' system user,
           which is created if missing, without a login shell)
  config   $SYSTEM_CONFIG (mode 0750, root:$SYSTEM_USER), with the key that
           encrypts the signing keys, $SYSTEM_KEY_FILE (created once, never replaced)
  service  $SYSTEM_UNIT_DIR/$SERVICE.service, enabled and started,
           listening on http://$SYSTEM_HOST:$SYSTEM_PORT

  Run it again to upgrade: when a database exists, a backup is taken first with
  the installed (old) code, then the code is replaced and the service restarted;
  the appliance migrates the schema on start, after a verified snapshot.
  Without a running systemd (e.g. in a container) the files are installed and
  the command to start the appliance by hand is printed. --no-start installs
  without starting or restarting the service.

  -h, --help       show this help

Environment:
  PYTHON=/path/to/python3.11   the Python to use (default: python3; 3.11 or newer)
  REDFLAG_DATA_DIR=DIR         user mode: the data dir when --data-dir is not given

This script never deletes or overwrites a data dir or a database.

Examples:
  ./install.sh                                   # install and run on http://127.0.0.1:8080
  ./install.sh --port 9090 --data-dir ~/redflag-data
  ./install.sh --host 0.0.0.0 --no-start         # install only, start it later
  PYTHON=/usr/bin/python3.11 ./install.sh        # pick the interpreter
  sudo ./install.sh --system                     # install or upgrade the systemd service

More: docs/install.md
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}
usage_error() {
    printf 'install.sh: error: %s (see ./install.sh --help)\n' "$*" >&2
    exit 2
}

absolute_path() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "${1#./}" ;;
    esac
}

# One question to the interpreter, asked the same way for $PYTHON and an existing venv.
python_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null
}

require_python() {
    local python="$1" version major minor
    if ! command -v "$python" >/dev/null 2>&1; then
        die "RedFlag needs Python $MIN_PYTHON or newer, but '$python' was not found; install it (apt install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11"
    fi
    if ! version="$(python_version "$python")" || [[ ! "$version" =~ ^([0-9]+)\.([0-9]+)\. ]]; then
        die "RedFlag needs Python $MIN_PYTHON or newer, but '$python' did not say which version it is; set PYTHON=/path/to/python3.11"
    fi
    major="${BASH_REMATCH[1]}"
    minor="${BASH_REMATCH[2]}"
    if ((major < 3 || (major == 3 && minor < 11))); then
        die "RedFlag needs Python $MIN_PYTHON or newer, but $python is Python $version; install 3.11 (apt install python3.11 python3.11-venv) and re-run with PYTHON=/usr/bin/python3.11"
    fi
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        die "Python $version ($python) lacks the venv module or ensurepip; install it (apt install python3-venv, or python3.${minor}-venv) and re-run"
    fi
    PYTHON_VERSION="$version"
}

validate_port() {
    if [[ ! "$1" =~ ^[0-9]{1,5}$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
        usage_error "--port must be a TCP port number (1-65535), not '$1'"
    fi
}

url_for() {
    local host="$1" port="$2"
    [[ "$host" == *:* ]] && host="[$host]" # an IPv6 address
    printf 'http://%s:%s\n' "$host" "$port"
}

# Copy the source to a scratch dir for pip: building in place would leave build/ and
# *.egg-info in the checkout (owned by root after --system). Virtual environments and
# data dirs inside the checkout are not copied.
stage_source() {
    local stage="$1" skip_venv="$2" skip_data="$3" entry
    for entry in "$REPO"/*; do
        [[ -e "$entry" ]] || continue
        case "${entry##*/}" in
            build | dist | data | *.egg-info | __pycache__) continue ;;
        esac
        if [[ "$entry" == "$skip_venv" || "$entry" == "$skip_data" ||
            -e "$entry/pyvenv.cfg" || -e "$entry/redflag.db" ]]; then
            continue
        fi
        cp -a "$entry" "$stage/"
    done
}

STAGE=""
remove_stage() {
    if [[ -n "$STAGE" && -d "$STAGE" ]]; then
        rm -rf -- "$STAGE"
    fi
    STAGE=""
}
trap remove_stage EXIT

# Create the virtual environment if needed, then (re)install RedFlag into it.
install_code() {
    local venv="$1" data="$2" existing
    if [[ -x "$venv/bin/python" ]]; then
        if ! existing="$(python_version "$venv/bin/python")"; then
            die "the virtual environment $venv does not work (its Python cannot start); move it away, or choose another with --venv, and re-run"
        fi
        if [[ ! "$existing" =~ ^3\.(1[1-9]|[2-9][0-9])\. ]]; then
            die "the virtual environment $venv has Python $existing, RedFlag needs $MIN_PYTHON or newer; move it away, or choose another with --venv, and re-run"
        fi
        say "Using the virtual environment in $venv (Python $existing)"
    elif [[ -e "$venv" && -n "$(ls -A "$venv" 2>/dev/null)" ]]; then
        die "$venv exists and is not a virtual environment; choose another with --venv"
    else
        say "Creating virtual environment in $venv (Python $PYTHON_VERSION)"
        if ! "$PYTHON" -m venv "$venv"; then
            die "could not create a virtual environment in $venv with $PYTHON; on Debian/Ubuntu install python3-venv (or python3.11-venv) and re-run"
        fi
    fi
    say "Upgrading pip"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip; then
        die "could not upgrade pip in $venv; check the network access to the package index (messages above)"
    fi
    say "Installing RedFlag and its dependencies into $venv (this can take a minute)"
    STAGE="$(mktemp -d "${TMPDIR:-/tmp}/redflag-install.XXXXXX")"
    stage_source "$STAGE" "$venv" "$data"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${STAGE}"; then
        die "pip could not install RedFlag into $venv (messages above); nothing else was changed"
    fi
    remove_stage
    if [[ ! -x "$venv/bin/redflag-appliance" ]]; then
        die "the install finished but $venv/bin/redflag-appliance is missing; re-run, and report this if it persists"
    fi
}

# Exit with a clear message if HOST:PORT cannot be listened on (usually: in use).
require_free_port() {
    local python="$1" host="$2" port="$3" problem
    problem="$("$python" - "$host" "$port" <<'EOF'
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
except OSError as exc:
    if exc.errno == errno.EADDRINUSE:
        print("in use")
    else:
        print(exc.strerror or exc)
EOF
)" || problem="could not be checked"
    if [[ "$problem" == "in use" ]]; then
        die "port $port on $host is already in use (is RedFlag already running? ss -ltnp \"sport = :$port\" shows which program); stop it or choose another port with --port"
    elif [[ -n "$problem" ]]; then
        die "cannot listen on $host port $port: $problem; check --host and --port"
    fi
}

# The data dir holds password and token hashes and the sealed signing keys: its owner
# only (0700, files 0600). Earlier releases left it 0755/0644; this tightens it.
make_private() {
    local data="$1" key_file="$2"
    chmod -R go-rwx -- "$data"
    if [[ -f "$key_file" ]]; then
        chmod 0600 -- "$key_file"
    fi
}

# Where the appliance keeps (or will create) the key file, as `serve` will resolve it.
key_file_of() {
    "$1/bin/python" -c 'from appliance.settings import load_settings; print(load_settings({}).key_file)'
}

user_install() {
    local venv="$1" data="$2" host="$3" port="$4" start="$5" url key_file
    require_python "$PYTHON"
    install_code "$venv" "$data"
    if [[ -d "$data" ]]; then
        say "Using the data dir $data (kept as it is; made private to you)"
    else
        say "Creating data dir $data"
        mkdir -p "$data"
    fi
    key_file="$(key_file_of "$venv")" || die "could not tell where the key file goes (messages above)"
    make_private "$data" "$key_file"
    say "The key file that encrypts the signing keys: $key_file"
    if [[ "$(id -u)" -eq 0 && -z "${REDFLAG_KEY_FILE:-}" ]]; then
        note "(as root the appliance keeps it in /etc/redflag; set REDFLAG_KEY_FILE to choose)"
    fi
    note "Keep a copy of it apart from the backups: without it they cannot be restored"
    note "with their signing keys (docs/install.md, 'The key file')."
    publish_agent_builds "$venv" "$data" migrate env REDFLAG_KEY_FILE="$key_file"
    url="$(url_for "$host" "$port")"
    local start_command=("$venv/bin/redflag-appliance" serve --data-dir "$data" --host "$host" --port "$port")
    if [[ "$start" == "no" ]]; then
        say "RedFlag is installed. Start it with:"
        note "${start_command[*]}"
        note "then open $url"
        return 0
    fi
    require_free_port "$venv/bin/python" "$host" "$port"
    echo "RedFlag is starting on $url (data in $data); Ctrl-C stops it."
    exec "${start_command[@]}"
}

systemd_running() { [[ -d /run/systemd/system ]]; }

# The agent builds the one-line agent installer serves (docs/releases.md), made now
# while PyPI is reachable, so that hosts need nothing but the appliance. A failure here
# is only a warning: hosts can still get the agent by hand (docs/agent.md).
# Usage: publish_agent_builds VENV DATA migrate|served [COMMAND PREFIX...]: `migrate`
# when no appliance serves the data dir (its schema is brought up to date first; if one
# does serve it after all, that refuses and the builds wait), `served` when the new code
# serves it (it migrated at start). The prefix runs the CLI, e.g. as_service_user.
publish_agent_builds() {
    local venv="$1" data="$2" schema="$3" out file
    shift 3
    if [[ "${REDFLAG_AGENT_BUILDS:-yes}" == "no" ]]; then
        note "Agent builds skipped (REDFLAG_AGENT_BUILDS=no); make them later with:"
        note "  redflag-appliance release build --publish --project $REPO"
        return 0
    fi
    if [[ "$schema" == "migrate" ]] \
        && ! (cd / && "$@" "$venv/bin/redflag-appliance" migrate --data-dir "$data" >/dev/null); then
        warn "the agent builds were not made (messages above); make and publish them with 'redflag-appliance release build --publish --project $REPO' once the appliance runs"
        return 0
    fi
    local version listed
    version="$("$venv/bin/redflag-appliance" --version | awk '{print $NF}')"
    listed="$(cd / && "$@" "$venv/bin/redflag-appliance" release list --json --data-dir "$data" 2>/dev/null)" || listed=""
    if "$venv/bin/python" -c '
import json, sys
version, text, platforms = sys.argv[1], sys.argv[2], sys.argv[3].split()
listed = {(r["platform"], r["version"]) for r in json.loads(text or "{}").get("releases", [])
          if r["channel"] == "stable" and not r["withdrawn_at"]}
sys.exit(0 if {(p, version) for p in platforms} <= listed else 1)
' "$version" "$listed" "${REDFLAG_AGENT_PLATFORMS:-linux-x86_64 linux-aarch64}"; then
        say "The agent builds of $version for other hosts are already published"
        return 0
    fi
    say "Building the agent for other hosts (x86_64, aarch64; Python 3.9-3.13; about a minute)"
    out="$(mktemp -d)"
    chmod 0755 "$out"
    # REDFLAG_AGENT_PLATFORMS / REDFLAG_AGENT_PYTHONS (space-separated) build fewer, e.g.
    # "linux-x86_64" and "3.11" for a fleet that has nothing else.
    local only=() item
    for item in ${REDFLAG_AGENT_PLATFORMS:-}; do only+=(--platform "$item"); done
    for item in ${REDFLAG_AGENT_PYTHONS:-}; do only+=(--python "$item"); done
    if ! "$venv/bin/redflag-appliance" release build --project "$REPO" --output "$out" \
        "${only[@]}" >/dev/null; then
        warn "the agent builds could not be made (messages above); the one-line agent install needs them: run 'redflag-appliance release build --publish --project $REPO' when PyPI is reachable"
        rm -rf "$out"
        return 0
    fi
    chmod 0644 "$out"/*.tar.gz
    for file in "$out"/*.tar.gz; do
        (cd / && "$@" "$venv/bin/redflag-appliance" release publish "$file" --if-new --data-dir "$data") \
            | sed 's/^/    /' || warn "publishing $file failed (messages above)"
    done
    rm -rf "$out"
}

# Run a command as the service user, with the environment the unit gives the service.
as_service_user() {
    runuser -u "$SYSTEM_USER" -- env REDFLAG_DATA_DIR="$SYSTEM_DATA" \
        REDFLAG_KEY_FILE="$SYSTEM_KEY_FILE" "$@"
}

# Take a backup with the code in venv $1, as the service user, and print its path. It is
# named pre-upgrade-from-VERSION-*.db: the appliance's retention never prunes those.
backup_database() {
    local venv="$1" version output target
    version="$("$venv/bin/redflag-appliance" --version 2>/dev/null | awk '{print $NF}')" || true
    [[ "$version" =~ ^[A-Za-z0-9.+_-]+$ ]] || version="unknown"
    target="$SYSTEM_DATA/backups/pre-upgrade-from-$version-$(date -u +%Y%m%dT%H%M%S%NZ).db"
    if ! output="$(umask 027 && cd / && as_service_user \
        "$venv/bin/redflag-appliance" backup --data-dir "$SYSTEM_DATA" --output "$target")"; then
        die "the backup of $SYSTEM_DATA/redflag.db failed (messages above), so nothing was upgraded; 'redflag-appliance doctor --data-dir $SYSTEM_DATA' may say why"
    fi
    output="$(printf '%s\n' "$output" | tail -n 1)"
    printf '%s\n' "${output:-$target}"
}

ensure_system_user() {
    if getent passwd "$SYSTEM_USER" >/dev/null; then
        say "Using the existing system user '$SYSTEM_USER'"
        return 0
    fi
    local nologin group_option=(--user-group)
    nologin="$(command -v nologin || echo /usr/sbin/nologin)"
    if getent group "$SYSTEM_USER" >/dev/null; then
        group_option=(--gid "$SYSTEM_USER")
    fi
    say "Creating system user '$SYSTEM_USER' (no login shell, home $SYSTEM_DATA)"
    useradd --system "${group_option[@]}" --home-dir "$SYSTEM_DATA" --no-create-home \
        --shell "$nologin" --comment "RedFlag appliance" "$SYSTEM_USER"
}

ensure_system_dirs() {
    mkdir -p "$SYSTEM_PREFIX"
    chmod 0755 "$SYSTEM_PREFIX"
    if [[ -d "$SYSTEM_DATA" ]]; then
        say "Keeping the data dir $SYSTEM_DATA"
    else
        say "Creating data dir $SYSTEM_DATA"
        mkdir -p "$SYSTEM_DATA"
    fi
    # Only the directory itself is chowned: its contents are data, and stay as they
    # are, except that nobody but the service user may read them (make_private).
    chown "$SYSTEM_USER:$SYSTEM_USER" "$SYSTEM_DATA"
    make_private "$SYSTEM_DATA" "$SYSTEM_KEY_FILE"
    local foreign
    foreign="$(find "$SYSTEM_DATA" -mindepth 1 ! -user "$SYSTEM_USER" -print -quit 2>/dev/null || true)"
    if [[ -n "$foreign" ]]; then
        warn "$foreign (and maybe more) in $SYSTEM_DATA is not owned by '$SYSTEM_USER', so the service may not be able to use it; fix with: chown -R $SYSTEM_USER:$SYSTEM_USER $SYSTEM_DATA"
    fi
    mkdir -p "$SYSTEM_CONFIG"
    chown "root:$SYSTEM_USER" "$SYSTEM_CONFIG"
    chmod 0750 "$SYSTEM_CONFIG"
}

# The key file is as precious as the database: created once, never replaced.
ensure_key_file() {
    if [[ -e "$SYSTEM_KEY_FILE" ]]; then
        say "Keeping the key file $SYSTEM_KEY_FILE"
        # E.g. made by an appliance once run as root: the service must be able to read it.
        chown "$SYSTEM_USER:$SYSTEM_USER" "$SYSTEM_KEY_FILE"
        chmod 0600 "$SYSTEM_KEY_FILE"
        return 0
    fi
    say "Creating the key file $SYSTEM_KEY_FILE (keep a copy apart from the backups)"
    if ! "$SYSTEM_VENV/bin/python" - "$SYSTEM_KEY_FILE" <<'EOF'
import sys
from pathlib import Path

from appliance.signers import KeyEncryptionKey

KeyEncryptionKey.create(Path(sys.argv[1]))
EOF
    then
        die "could not create the key file $SYSTEM_KEY_FILE (messages above)"
    fi
    chown "$SYSTEM_USER:$SYSTEM_USER" "$SYSTEM_KEY_FILE"
    chmod 0600 "$SYSTEM_KEY_FILE"
}

wait_for_health() {
    local url="$1"
    "$SYSTEM_VENV/bin/python" - "$url/healthz" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF
}

system_install() {
    local start="$1" upgrading="no" backup="" was_active="no" url
    url="$(url_for "$SYSTEM_HOST" "$SYSTEM_PORT")"
    if [[ "$(id -u)" -ne 0 ]]; then
        die "--system installs a service and a system user, so it must run as root: sudo ./install.sh --system"
    fi
    if [[ ! -f "$REPO/packaging/$SERVICE.service" ]]; then
        die "$REPO/packaging/$SERVICE.service is missing; run install.sh from a complete RedFlag checkout"
    fi
    local tool
    for tool in useradd runuser getent; do
        command -v "$tool" >/dev/null || die "'$tool' is needed for --system but was not found"
    done
    require_python "$PYTHON"
    # Everything installed here is read by the service user: do not inherit umask 077.
    umask 022

    ensure_system_user
    # The service runs this Python as '$SYSTEM_USER': one under /root, say, would not start.
    if ! (cd / && runuser -u "$SYSTEM_USER" -- "$PYTHON" -c '') 2>/dev/null; then
        die "the '$SYSTEM_USER' user cannot run $PYTHON (is it under a private home such as /root?); install a system Python (apt install python3.11 python3.11-venv) and re-run with PYTHON=/usr/bin/python3.11"
    fi
    ensure_system_dirs

    if [[ -x "$SYSTEM_VENV/bin/redflag-appliance" ]]; then
        upgrading="yes"
    fi
    if [[ "$upgrading" == "yes" && -f "$SYSTEM_DATA/redflag.db" ]]; then
        say "Backing up the database with the installed code before upgrading"
        backup="$(backup_database "$SYSTEM_VENV")" || exit 1
        note "pre-upgrade backup: $backup"
    fi

    install_code "$SYSTEM_VENV" "$SYSTEM_DATA"
    ensure_key_file
    if [[ "$upgrading" == "no" && -f "$SYSTEM_DATA/redflag.db" ]]; then
        # Data from an earlier installation, but no code to back it up with: use the new.
        say "Found an existing database; backing it up before the first start"
        backup="$(backup_database "$SYSTEM_VENV")" || exit 1
        note "backup: $backup"
    fi

    say "Installing the systemd unit $SYSTEM_UNIT_DIR/$SERVICE.service"
    mkdir -p "$SYSTEM_UNIT_DIR"
    install -m 0644 "$REPO/packaging/$SERVICE.service" "$SYSTEM_UNIT_DIR/$SERVICE.service"

    local manual_start="runuser -u $SYSTEM_USER -- env REDFLAG_KEY_FILE=$SYSTEM_KEY_FILE $SYSTEM_VENV/bin/redflag-appliance serve --data-dir $SYSTEM_DATA --host $SYSTEM_HOST --port $SYSTEM_PORT"
    if ! systemd_running; then
        say "RedFlag is installed, but systemd is not running here (no /run/systemd/system),"
        note "so the service was not started. Start the appliance by hand with:"
        note "  $manual_start"
        if [[ "$upgrading" == "yes" ]]; then
            note "If the old version is still running, stop it first: it keeps the old code."
        fi
        publish_agent_builds "$SYSTEM_VENV" "$SYSTEM_DATA" migrate as_service_user
        print_system_summary "$backup"
        return 0
    fi

    systemctl daemon-reload
    if systemctl is-active --quiet "$SERVICE"; then
        was_active="yes"
    fi
    if [[ "$start" == "no" ]]; then
        say "RedFlag is installed; the service was not started or restarted (--no-start)."
        note "Start it with: systemctl enable --now $SERVICE"
        publish_agent_builds "$SYSTEM_VENV" "$SYSTEM_DATA" migrate as_service_user
        print_system_summary "$backup"
        return 0
    fi
    if [[ "$was_active" == "yes" ]]; then
        say "Restarting $SERVICE with the new code"
        systemctl enable --quiet "$SERVICE"
        systemctl restart "$SERVICE"
    else
        say "Enabling and starting $SERVICE"
        systemctl enable --quiet --now "$SERVICE"
    fi
    if ! wait_for_health "$url"; then
        print_system_summary "$backup"
        die "$SERVICE did not answer $url/healthz within 60 s; see: systemctl status $SERVICE; journalctl -u $SERVICE -n 50"
    fi
    say "RedFlag is running on $url (service $SERVICE, data in $SYSTEM_DATA)."
    # Published through the running appliance's database, which its new code migrated.
    publish_agent_builds "$SYSTEM_VENV" "$SYSTEM_DATA" served as_service_user
    print_system_summary "$backup"
}

print_system_summary() {
    local backup="$1"
    note "code:    $SYSTEM_VENV"
    note "data:    $SYSTEM_DATA"
    note "config:  $SYSTEM_CONFIG (key file $SYSTEM_KEY_FILE)"
    note "service: $SYSTEM_UNIT_DIR/$SERVICE.service"
    if [[ -n "$backup" ]]; then
        note "backup:  $backup (roll back with: systemctl stop $SERVICE; runuser -u $SYSTEM_USER -- env REDFLAG_KEY_FILE=$SYSTEM_KEY_FILE $SYSTEM_VENV/bin/redflag-appliance restore --data-dir $SYSTEM_DATA --yes $backup)"
    fi
}

main() {
    local mode="user" start="yes" venv="" data="" host="" port=""
    while (($# > 0)); do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --system) mode="system" ;;
            --no-start) start="no" ;;
            --venv | --data-dir | --host | --port)
                (($# >= 2)) || usage_error "$1 needs a value"
                case "$1" in
                    --venv) venv="$2" ;;
                    --data-dir) data="$2" ;;
                    --host) host="$2" ;;
                    --port) port="$2" ;;
                esac
                shift
                ;;
            --venv=*) venv="${1#*=}" ;;
            --data-dir=*) data="${1#*=}" ;;
            --host=*) host="${1#*=}" ;;
            --port=*) port="${1#*=}" ;;
            *) usage_error "unknown option '$1'" ;;
        esac
        shift
    done

    if [[ "$mode" == "system" ]]; then
        if [[ -n "$venv$data$host$port" ]]; then
            usage_error "--system uses fixed places ($SYSTEM_VENV, $SYSTEM_DATA, $SYSTEM_HOST:$SYSTEM_PORT); change the address later with 'systemctl edit $SERVICE' (docs/install.md)"
        fi
        system_install "$start"
        return
    fi

    venv="$(absolute_path "${venv:-$REPO/.venv}")"
    data="$(absolute_path "${data:-${REDFLAG_DATA_DIR:-$REPO/data}}")"
    host="${host:-127.0.0.1}"
    port="${port:-8080}"
    validate_port "$port"
    [[ -n "$host" ]] || usage_error "--host needs an address"
    user_install "$venv" "$data" "$host" "$port" "$start"
}

main "$@"
