"""The one-line agent installer: the script the appliance serves at /install.sh, and
the command that fetches it, checks its SHA-256 and runs it.

The command pins the script's hash because a script piped straight into a shell runs
before anything can check it: whoever answers in the appliance's place could send any
script. With the hash in the command (printed on the appliance's own pages), a changed
script is refused before it runs; the script then checks everything it downloads
(appliance/distribution/agent-install.sh). The script's bytes change only with the
appliance's version, so a printed command keeps working across agent releases.
"""

from __future__ import annotations

import functools
import hashlib
import shlex
from pathlib import Path

SCRIPT = Path(__file__).with_name("agent-install.sh")
LOCAL_NAME = "redflag-install.sh"


@functools.cache
def script() -> bytes:
    return SCRIPT.read_bytes()


def script_sha256() -> str:
    return hashlib.sha256(script()).hexdigest()


def one_line(server: str, token: str, *, sudo: str = "sudo ") -> str:
    """Download the installer, refuse it unless its SHA-256 is this appliance's, run it."""
    server = server.rstrip("/")
    url = shlex.quote(f"{server}/install.sh")
    return (
        f"curl -fsSLo {LOCAL_NAME} {url} && "
        f'echo "{script_sha256()}  {LOCAL_NAME}" | sha256sum -c --quiet && '
        f"{sudo}sh {LOCAL_NAME} --server {shlex.quote(server)} --token {token}"
    )
