"""The installer scripts the appliance serves, checked without a host to run them on:
agent-install.sh passes shellcheck as POSIX sh (tests/integration/test_agent_installer.py
runs it in Debian roots); agent-install.ps1 and the Windows one-line command parse as
PowerShell, and the command pins the bytes the appliance serves.

No PowerShell runs here (none is packaged for Debian, PyPI or npm without a download
from elsewhere), so the PowerShell is parsed with tree-sitter's PowerShell grammar: it
catches syntax errors, not what the script does on Windows."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx
import tree_sitter
import tree_sitter_powershell

from appliance.distribution import installer
from tests.integration.conftest import Fleet

POWERSHELL = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def powershell_errors(source: bytes) -> list[str]:
    """Where the PowerShell grammar finds a syntax error (line:column and the text)."""
    found: list[str] = []
    pending = [POWERSHELL.parse(source).root_node]
    while pending:
        node = pending.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            found.append(f"{row + 1}:{column + 1} {source[node.start_byte : node.end_byte][:60]!r}")
        pending.extend(node.children)
    return sorted(found)


def test_the_sh_installer_passes_shellcheck_as_posix_sh() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), "--shell=sh", "--severity=style", str(installer.SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_powershell_installer_parses() -> None:
    assert powershell_errors(installer.powershell_script()) == []


def test_the_powershell_check_finds_a_broken_script() -> None:
    """The parse above can fail: a script cut short is an error."""
    source = installer.powershell_script()
    cut = source[: source.index(b"foreach ($byte in") + 40]

    assert powershell_errors(cut) != []


def test_the_windows_one_line_parses_and_pins_the_script_the_appliance_serves(
    fleet: Fleet,
) -> None:
    line = installer.one_line_windows("http://redflag.lan:8080/", "rf_reg_x.y'z")
    served = httpx.get(f"{fleet.appliance.url}/install.ps1")

    assert served.status_code == 200
    assert served.content == installer.POWERSHELL_SCRIPT.read_bytes()
    assert f"-ne '{hashlib.sha256(served.content).hexdigest()}'" in line
    assert "-Uri 'http://redflag.lan:8080/install.ps1' -OutFile $f;" in line
    assert line.endswith("-File $f -Server 'http://redflag.lan:8080' -Token 'rf_reg_x.y''z'")
    assert powershell_errors(line.encode()) == []
