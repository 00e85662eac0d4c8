"""The one-line agent installer: the script the appliance serves at /install.sh, and
the command that fetches it, checks its SHA-256 and runs it.

The command pins the script's hash because a script piped straight into a shell runs
before anything can check it: whoever answers in the appliance's place could send any
script. With the hash in the command (printed on the appliance's own pages), a changed
script is refused before it runs; the script then checks everything it downloads
(appliance/distribution/agent-install.sh). The script's bytes change only with the
appliance's version, so a printed command keeps working across agent releases.

Windows has the same pair, /install.ps1 and a PowerShell line that pins it with
Get-FileHash; that script is a first step that installs nothing yet (its header and
docs/design-notes.md say why).
"""

from __future__ import annotations

import functools
import hashlib
import shlex
from pathlib import Path

SCRIPT = Path(__file__).with_name("agent-install.sh")
LOCAL_NAME = "redflag-install.sh"
POWERSHELL_SCRIPT = Path(__file__).with_name("agent-install.ps1")
POWERSHELL_LOCAL_NAME = "redflag-install.ps1"


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


@functools.cache
def powershell_script() -> bytes:
    return POWERSHELL_SCRIPT.read_bytes()


def powershell_sha256() -> str:
    return hashlib.sha256(powershell_script()).hexdigest()


def one_line_windows(server: str, token: str) -> str:
    """The same for Windows, in an elevated PowerShell (5.1 or 7): download the script,
    refuse it unless Get-FileHash gives this appliance's SHA-256, run it."""
    server = server.rstrip("/")
    script = f"$env:TEMP\\{POWERSHELL_LOCAL_NAME}"
    return (
        f'$f = "{script}"; '
        f"Invoke-WebRequest -UseBasicParsing -Uri {_ps_quote(server + '/install.ps1')} "
        "-OutFile $f; "
        f"if ((Get-FileHash -Algorithm SHA256 -LiteralPath $f).Hash -ne '{powershell_sha256()}') "
        f"{{ Remove-Item $f; throw '{POWERSHELL_LOCAL_NAME} is not the script this appliance "
        "printed: not run' }; "
        "powershell -NoProfile -ExecutionPolicy Bypass -File $f "
        f"-Server {_ps_quote(server)} -Token {_ps_quote(token)}"
    )


def _ps_quote(text: str) -> str:
    """A PowerShell single-quoted string: nothing in it is expanded; a quote is doubled."""
    return "'" + text.replace("'", "''") + "'"
