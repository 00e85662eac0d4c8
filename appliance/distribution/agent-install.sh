#!/bin/sh
# RedFlag agent installer, served by the appliance at /install.sh. Run it as the
# appliance prints it (the command checks this file's SHA-256 before running it):
#
#   sh redflag-install.sh --server URL --token rf_reg_...      install, register, start
#   sh redflag-install.sh --server URL --token ... --unprivileged   the same, the agent
#                                            running as the user redflag-agent with sudo rules
#   sh redflag-install.sh --server URL                         upgrade in place (same mode)
#   sh redflag-install.sh --uninstall [--purge]                remove it
#
# Nothing it downloads is used before it is checked: the appliance's root key must have
# the fingerprint the registration token carries (or, on upgrade, the key this host
# already trusts), that key must have signed the release manifest, and the agent build
# must have the manifest's length and SHA-256. Everything comes from the appliance; the
# host needs no internet. docs/agent.md explains each step.
set -eu

PREFIX=/opt/redflag-agent
STATE_DIR=/var/lib/redflag-agent
UNIT=/etc/systemd/system/redflag-agent.service
# The unprivileged mode: the agent runs as USER_NAME and gets root only for the wrapper
# scripts its sudoers file names (packaging/redflag-agent.sudoers; docs/agent.md).
USER_NAME=redflag-agent
UNPRIVILEGED_UNIT=/etc/systemd/system/redflag-agent-unprivileged.service
SUDOERS=/etc/sudoers.d/redflag-agent
WRAPPERS=/usr/lib/redflag-agent
DEFAULT_STATE_DIR=$STATE_DIR

say() { printf 'redflag-install: %s\n' "$*"; }
die() { printf 'redflag-install: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
usage: redflag-install.sh --server URL [--token TOKEN] [--tag TAG ...] [--channel NAME]
                          [--state-dir DIR] [--unprivileged | --root]
       redflag-install.sh --uninstall [--purge] [--state-dir DIR]

  --server URL     the appliance, as this host reaches it (http://redflag.lan:8080)
  --token TOKEN    a registration token (needed the first time, not for upgrades)
  --tag TAG        a tag for this host (repeatable)
  --channel NAME   the release channel to install from (stable)
  --state-dir DIR  where the agent keeps its identity and outbox (/var/lib/redflag-agent)
  --unprivileged   run the agent as the user redflag-agent, with sudo rules for
                   package upgrades and reboots only (needs sudo); the default is root
  --root           run the agent as root (switches an unprivileged install back)
                   Without either, a re-run keeps the mode this host has.
  --uninstall      remove the agent; its state dir stays unless --purge
  --purge          with --uninstall: also remove the state dir (identity, trust, outbox)
EOF
}

server="" token="" channel=stable action=install purge=no tags="" mode=""
while [ $# -gt 0 ]; do
    case "$1" in
        --server) [ $# -ge 2 ] || die "--server needs a URL"; server=${2%/}; shift 2 ;;
        --token) [ $# -ge 2 ] || die "--token needs a value"; token=$2; shift 2 ;;
        --tag) [ $# -ge 2 ] || die "--tag needs a value"; tags="$tags $2"; shift 2 ;;
        --channel) [ $# -ge 2 ] || die "--channel needs a name"; channel=$2; shift 2 ;;
        --state-dir) [ $# -ge 2 ] || die "--state-dir needs a directory"; STATE_DIR=$2; shift 2 ;;
        --uninstall) action=uninstall; shift ;;
        --purge) purge=yes; shift ;;
        --unprivileged) mode=unprivileged; shift ;;
        --root) mode=root; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run it as root (sudo sh $0 ...): it installs under $PREFIX and a systemd unit"

systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# Stops and removes a unit this script installed (either mode's), if it is there.
remove_unit() {
    if [ -f "$1" ] && systemd_running; then
        systemctl disable --now "$(basename "$1")" >/dev/null 2>&1 || true
    fi
    rm -f "$1"
}

# The unprivileged mode's root rights: the sudoers file first (its rules name the
# wrappers), then the wrappers.
remove_sudo_rules() {
    rm -f "$SUDOERS"
    rm -rf "$WRAPPERS"
}

if [ "$action" = uninstall ]; then
    remove_unit "$UNIT"
    remove_unit "$UNPRIVILEGED_UNIT"
    systemd_running && systemctl daemon-reload || true
    rm -rf "$PREFIX"
    say "removed $PREFIX and the agent's unit"
    if [ -e "$SUDOERS" ] || [ -e "$WRAPPERS" ]; then
        remove_sudo_rules
        say "removed the sudo rules ($SUDOERS) and their wrappers ($WRAPPERS)"
    fi
    if [ "$purge" = yes ]; then
        rm -rf "$STATE_DIR"
        say "removed $STATE_DIR (identity, trust, outbox): registering again makes a new agent"
        if id -u "$USER_NAME" >/dev/null 2>&1; then
            userdel "$USER_NAME" || die "could not remove the user $USER_NAME (see above)"
            say "removed the user $USER_NAME"
        fi
    else
        say "kept $STATE_DIR (identity, trust, outbox): reinstalling keeps this agent; --purge removes it"
    fi
    exit 0
fi

# Without --unprivileged or --root, a re-run (an upgrade) keeps the mode this host has.
if [ -z "$mode" ]; then
    if [ -f "$UNPRIVILEGED_UNIT" ]; then mode=unprivileged; else mode=root; fi
fi
if [ "$mode" = unprivileged ]; then
    [ "$STATE_DIR" = "$DEFAULT_STATE_DIR" ] \
        || die "--unprivileged keeps the state in $DEFAULT_STATE_DIR (its unit's sandbox names it): drop --state-dir"
    if ! command -v sudo >/dev/null 2>&1 || ! command -v visudo >/dev/null 2>&1; then
        die "--unprivileged needs sudo: apt-get install sudo (or dnf install sudo); nothing was installed"
    fi
    command -v runuser >/dev/null 2>&1 \
        || die "--unprivileged needs runuser: apt-get install util-linux (or dnf install util-linux)"
    id -u "$USER_NAME" >/dev/null 2>&1 || command -v useradd >/dev/null 2>&1 \
        || die "--unprivileged needs useradd to create the user $USER_NAME: apt-get install passwd (or dnf install shadow-utils)"
fi

[ -n "$server" ] || die "--server URL is needed: the appliance's address as this host reaches it"
case "$server" in http://*|https://*) ;; *) die "--server must start with http:// or https://" ;; esac
if [ -z "$token" ] && [ ! -f "$STATE_DIR/identity.json" ]; then
    die "--token is needed: this host is not registered yet (make one with 'redflag-appliance token create' or on the Tokens page)"
fi

PYTHON=$(command -v python3 || true)
[ -n "$PYTHON" ] || die "python3 (3.9 or newer) is needed: apt-get install python3 python3-venv, or dnf install python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || die "python3 is $("$PYTHON" -V 2>&1); the agent needs 3.9 or newer"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
    || die "python3's venv module is missing: apt-get install python3-venv"
# The release manifest's Ed25519 signature is checked with OpenSSL 3 (pkeyutl -rawin)
# or, where OpenSSL is older (1.1.1 on Debian 11), with OpenSSH 8.1+ (ssh-keygen -Y).
if ! openssl version 2>/dev/null | grep -q '^OpenSSL [3-9]' \
    && ! { command -v ssh-keygen >/dev/null 2>&1 && ssh-keygen -Y verify 2>&1 | grep -q namespace; }; then
    die "checking the release signature needs OpenSSL 3 or OpenSSH 8.1+: apt-get install openssh-client (or openssl)"
fi

case "$(uname -m)" in
    x86_64|amd64) platform=linux-x86_64 ;;
    aarch64|arm64) platform=linux-aarch64 ;;
    *) die "no agent build for $(uname -m) yet: install the agent with pip (docs/agent.md)" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

say "checking the appliance at $server"
# Fetch the signed manifest, check the root key against the token's fingerprint (or the
# key this host already trusts), verify the signature with openssl, download the build
# and check its length and SHA-256. Prints the version; nothing is installed yet.
version=$("$PYTHON" - "$server" "$token" "$channel" "$platform" "$work" "$STATE_DIR" <<'PY'
import base64, hashlib, json, os, shutil, subprocess, sys, time, urllib.error, urllib.request

server, token, channel, platform, work, state_dir = sys.argv[1:7]
DEADLINE_S = 600

def die(message):
    sys.stderr.write("redflag-install: " + message + "\n")
    sys.exit(1)

def get(path, limit):
    url = server + path
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            started, chunks, size = time.monotonic(), [], 0
            while True:
                chunk = answer.read1(65536) if hasattr(answer, "read1") else answer.read(65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > limit:
                    die(f"{url}: more than {limit} bytes; refused")
                if time.monotonic() - started > DEADLINE_S:
                    die(f"{url}: not complete after {DEADLINE_S} s; refused")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        die(f"{url}: the appliance answered {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        die(f"cannot reach {url}: {getattr(exc, 'reason', exc)} (is --server right, and the appliance running?)")

def b64(text):  # base64url without padding, as the appliance writes it
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

def fingerprint(public_key):
    digest = hashlib.sha256(b"redflag-key:" + public_key).digest()[:20]
    return base64.b32encode(digest).decode().lower()

if token:
    expected = token.rsplit(".", 1)[-1] if "." in token else ""
    if not expected.isalnum() or len(expected) != 32:
        die("the token does not look like rf_reg_<secret>.<fingerprint>; copy it whole")
else:  # an upgrade: the root key this host already trusts
    try:
        with open(os.path.join(state_dir, "trust.json")) as handle:
            expected = fingerprint(b64(json.load(handle)["root_public_key"]))
    except (OSError, ValueError, KeyError) as exc:
        die(f"cannot read this host's trust ({exc}); give --token")

try:
    answer = json.loads(get(f"/api/v1/releases/manifest?channel={channel}", 256 * 1024))
    root_key = b64(answer["root_public_key"])
    signed = answer["manifest"]
    document, signature = signed["document"].encode(), b64(signed["signature"])
except (ValueError, KeyError, TypeError) as exc:
    die(f"the appliance's release manifest is malformed ({exc}); refused")
if fingerprint(root_key) != expected:
    die("the appliance's root key does not match the token's fingerprint: this is not "
        "the appliance the token came from, or someone is in between. Nothing was installed")
# Ed25519 public key as DER (SubjectPublicKeyInfo): a fixed prefix and the 32 bytes.
der = bytes.fromhex("302a300506032b6570032100") + root_key
ssh_key = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + root_key).decode()
files = {
    "root.der": der,
    "manifest": document,
    "manifest.sig": signature,
    "manifest.sshsig": str(answer.get("ssh_signature", "")).encode(),
    "allowed_signers": f'redflag namespaces="redflag-install" ssh-ed25519 {ssh_key}\n'.encode(),
}
paths = {name: os.path.join(work, name) for name in files}
for name, content in files.items():
    with open(paths[name], "wb") as handle:
        handle.write(content)
version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout \
    if shutil.which("openssl") else ""
if version.startswith("OpenSSL ") and version.split()[1][:1] >= "3":
    check = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["root.der"], "-keyform",
         "DER", "-rawin", "-in", paths["manifest"], "-sigfile", paths["manifest.sig"]],
        capture_output=True, text=True,
    )
else:
    with open(paths["manifest"], "rb") as stdin:
        check = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", paths["allowed_signers"], "-I", "redflag",
             "-n", "redflag-install", "-s", paths["manifest.sshsig"]],
            stdin=stdin, capture_output=True, text=True,
        )
if check.returncode != 0:
    die("the release manifest's signature does not verify: refused, nothing was installed "
        f"({(check.stdout + check.stderr).strip()[:200]})")
manifest = json.loads(document)
if manifest.get("purpose") != "agent-install" or manifest.get("channel") != channel:
    die("the signed manifest is not an install manifest for this channel; refused")
release = manifest.get("releases", {}).get(platform)
if not release:
    die(f"no agent build for {platform} on channel {channel}: publish one on the appliance "
        "(redflag-appliance release build --publish; docs/releases.md)")
body = get(release["url_path"], int(release["length"]))
if len(body) != int(release["length"]) or hashlib.sha256(body).hexdigest() != release["sha256"]:
    die(f"the agent build {release['version']} does not match its signed SHA-256: refused, "
        "nothing was installed")
with open(os.path.join(work, "agent.tar.gz"), "wb") as handle:
    handle.write(body)
print(release["version"])
PY
) || exit 1

say "verified agent $version for $platform"
mkdir -p "$work/build"
tar -xzf "$work/agent.tar.gz" -C "$work/build"
wheels="$work/build/wheels"
support="$work/build/support"
if [ "$mode" = unprivileged ]; then
    [ -f "$support/redflag-agent.sudoers" ] \
        || die "the agent build $version carries no unprivileged setup (support/): publish a newer one (redflag-appliance release build --publish); nothing was installed"
    # This host's sudo must accept the rules before anything is installed: a sudoers
    # file it cannot parse would break sudo for every user.
    if ! checked=$(visudo -cf "$support/redflag-agent.sudoers" 2>&1); then
        die "this host's sudo does not accept the agent's sudoers file ($(printf '%s\n' "$checked" | head -n 1)); nothing was installed"
    fi
fi

# In the unprivileged mode the agent's user runs these: readable by all, whatever
# root's umask.
umask 022
mkdir -p "$PREFIX/versions"
dest="$PREFIX/versions/$version"
# A venv is not relocatable (its scripts name its path), so it is made in place and
# counts only once `.complete` is written; a half-made one is made again.
if [ ! -f "$dest/.complete" ]; then
    say "installing $version into $dest"
    rm -rf "$dest"
    "$PYTHON" -m venv "$dest"
    "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$wheels" -r "$wheels/requirements.txt"
    "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --no-deps "$wheels"/redflag-*.whl
    "$dest/bin/redflag-agent" --version >/dev/null \
        || die "the new agent does not start; nothing was switched (see above)"
    touch "$dest/.complete"
fi
# Switch atomically: a new link renamed over the old one.
ln -sfn "versions/$version" "$PREFIX/current.new"
mv -T "$PREFIX/current.new" "$PREFIX/current"
ln -sfn current/bin/redflag-agent "$PREFIX/redflag-agent"
say "agent $version is current ($PREFIX/current)"

agent="$PREFIX/current/bin/redflag-agent"
# The other mode's daemon stops before its files change owner (the two units conflict).
if [ "$mode" = unprivileged ]; then
    remove_unit "$UNIT"
    if ! id -u "$USER_NAME" >/dev/null 2>&1; then
        nologin=$(command -v nologin || echo /usr/sbin/nologin)
        useradd --system --user-group --home-dir "$STATE_DIR" --shell "$nologin" "$USER_NAME" \
            || die "could not create the user $USER_NAME (see above)"
        say "created the system user $USER_NAME"
    fi
    install -d -o root -g root -m 0755 "$WRAPPERS"
    for wrapper in "$support"/wrappers/*; do
        install -o root -g root -m 0755 "$wrapper" "$WRAPPERS/"
    done
    # Put in place by a rename, so sudo never reads a half-written file (it skips names
    # with a dot, such as the temporary one).
    install -o root -g root -m 0440 "$support/redflag-agent.sudoers" "$SUDOERS.new"
    mv -f "$SUDOERS.new" "$SUDOERS"
    say "installed the sudo rules ($SUDOERS) and their wrappers ($WRAPPERS)"
    owner="$USER_NAME:$USER_NAME"
    as_agent() { runuser -u "$USER_NAME" -- sh -c 'umask 077; exec "$@"' sh "$@"; }
else
    remove_unit "$UNPRIVILEGED_UNIT"
    if [ -e "$SUDOERS" ] || [ -e "$WRAPPERS" ]; then
        remove_sudo_rules
        say "the agent runs as root again: removed $SUDOERS and $WRAPPERS"
    fi
    owner="0:0"
    as_agent() { "$@"; }
fi

# Identity, trust and outbox stay whatever the mode; only their owner follows it.
mkdir -p "$STATE_DIR"
chown -R "$owner" "$STATE_DIR"
chmod 0700 "$STATE_DIR"
if [ -f "$STATE_DIR/identity.json" ]; then
    say "already registered; identity, trust and outbox kept in $STATE_DIR"
else
    set -- register --server "$server" --token "$token" --state-dir "$STATE_DIR"
    for tag in $tags; do set -- "$@" --tag "$tag"; done
    as_agent "$agent" "$@" || die "registration failed (the message above says why); run this again when fixed"
fi

if [ "$mode" = unprivileged ]; then
    unit=$UNPRIVILEGED_UNIT
    sed "s#/opt/redflag-agent/venv/bin/redflag-agent#$agent#" \
        "$support/redflag-agent-unprivileged.service" >"$unit"
    grep -q "^ExecStart=$agent run" "$unit" \
        || die "the build's unprivileged unit does not start $agent; not started"
    run_it="runuser -u $USER_NAME -- $agent run --state-dir $STATE_DIR"
else
    unit=$UNIT
    run_it="$agent run --state-dir $STATE_DIR"
cat >"$UNIT" <<EOF
[Unit]
Description=RedFlag agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$PREFIX/current/bin/redflag-agent run --state-dir $STATE_DIR
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
EOF
fi
name=$(basename "$unit" .service)
if systemd_running; then
    systemctl daemon-reload
    systemctl enable "$name.service" >/dev/null 2>&1
    systemctl restart "$name.service"
    say "started $name.service (systemctl status $name)"
else
    say "systemd is not running here; start the agent with:"
    say "  $run_it"
fi
if [ "$mode" = unprivileged ]; then
    say "done: agent $version running as $USER_NAME, state in $STATE_DIR, uninstall with: sh $0 --uninstall"
else
    say "done: agent $version, state in $STATE_DIR, uninstall with: sh $0 --uninstall"
fi
