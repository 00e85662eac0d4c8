"""winget: pending upgrades from the `winget upgrade` table and installs of approved
package ids, one `winget upgrade --id ID --exact` each.

winget has no machine-readable listing, so the table is read by the column positions of
its header line (whatever the language of the headings: Name, Id, Version, Available and,
with several sources, Source, always in that order), measured in terminal cells as winget
pads them. Recorded outputs under tests/fixtures/winget/ test the parser.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.process import Completed, run
from agent.scanners.registry import register
from kernel.install_results import DryRunResult, InstalledPackage, InstallResult, PlannedChange
from kernel.logs import log_event
from kernel.protocol import ProtocolError, UpdateRecord, check_package_name, check_version

logger = logging.getLogger("redflag.agent.scanners.winget")

SCAN_TIMEOUT_S = 600.0
INSTALL_TIMEOUT_S = 3600.0
OUTPUT_TAIL_CHARS = 8 * 1024
RAW_OUTPUT_CHARS = 64 * 1024
ELLIPSIS = "…"  # what winget puts at the end of a value cut to fit its column

LIST_ARGS = (
    "upgrade",
    "--include-unknown",
    "--disable-interactivity",
    "--accept-source-agreements",
)
INSTALL_ARGS = (
    "--exact",
    "--silent",
    "--include-unknown",  # the scan lists unknown-version packages; let them be upgraded
    "--accept-package-agreements",
    "--accept-source-agreements",
    "--disable-interactivity",
)

# winget exits with HRESULTs; Windows reports them unsigned (0x8A15002B), some wrappers
# signed (-1978335189): compare them as unsigned 32-bit values.
NO_APPLICATIONS_FOUND = 0x8A150014
UPDATE_NOT_APPLICABLE = 0x8A15002B
PACKAGE_ALREADY_INSTALLED = 0x8A150061
REBOOT_REQUIRED_TO_FINISH = 0x8A150109
REBOOT_REQUIRED_TO_INSTALL = 0x8A15010A
REBOOT_INITIATED = 0x8A15010B
MSI_REBOOT_REQUIRED = 3010  # ERROR_SUCCESS_REBOOT_REQUIRED, passed through from installers
MSI_REBOOT_INITIATED = 1641

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_RULE = re.compile(r"^-{10,}$")


class WingetFailed(RuntimeError):
    """winget exited with an error; the message names the code."""


@dataclass(frozen=True)
class WingetUpgrade:
    """One row of the `winget upgrade` table."""

    name: str
    package_id: str
    version: str
    available: str
    source: str = ""
    explicit_only: bool = False  # listed under "require explicit targeting for upgrade"


def exit_code(completed: Completed) -> int:
    return completed.returncode & 0xFFFFFFFF


# --- parsing ---------------------------------------------------------------------


def _cell_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cells(line: str) -> list[tuple[int, int, str]]:
    """Each character with the terminal column it starts at and the columns it takes."""
    placed, column = [], 0
    for char in line:
        width = _cell_width(char)
        placed.append((column, width, char))
        column += width
    return placed


def _char_at(placed: list[tuple[int, int, str]], column: int) -> str:
    """The character covering `column`, or "" past the end of the line."""
    return next((char for col, width, char in placed if col <= column < col + width), "")


def screen_lines(text: str) -> list[str]:
    """The lines as a terminal would finally show them: progress spinners and bars that
    winget redraws with carriage returns and backspaces are gone, and so are escapes."""
    lines = []
    for raw in _ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        line = next((part for part in reversed(raw.split("\r")) if part.strip()), "")
        while re.search(r"[^\b]\x08", line):
            line = re.sub(r"[^\b]\x08", "", line)
        lines.append(line.replace("\b", "").rstrip())
    return lines


def _column_starts(header: str, rows: list[str]) -> list[int]:
    placed = _cells(header)
    starts = [
        col for col, _, char in placed if char != " " and _char_at(placed, col - 1) in (" ", "")
    ]
    if len(starts) not in (4, 5):
        # a heading of several words: keep only the starts every row leaves a gap before
        row_cells = [_cells(row) for row in rows]
        starts = starts[:1] + [
            s for s in starts[1:] if all(_char_at(row, s - 1) in (" ", "") for row in row_cells)
        ]
    if len(starts) not in (4, 5):
        raise ValueError(f"winget table header not understood: {header.strip()[:120]!r}")
    return starts


def _split(line: str, starts: list[int]) -> list[str] | None:
    """The cells of a table row, or None when the line is not a row of this table (a
    footer such as "3 upgrades available.", in whatever language)."""
    placed = _cells(line)
    if any(_char_at(placed, start - 1) not in (" ", "") for start in starts[1:]):
        return None
    cells = [""] * len(starts)
    for col, _, char in placed:
        cells[max(i for i, start in enumerate(starts) if start <= col or i == 0)] += char
    values = [cell.strip() for cell in cells]
    if not all(values[1:4]) or " " in values[1]:
        return None
    return values


def parse_upgrade_table(text: str) -> list[WingetUpgrade]:
    """Every row of every table in `winget upgrade` output. A table whose lead-in line
    ends with a colon ("The following packages have an upgrade available, but require
    explicit targeting for upgrade:") lists packages that `upgrade --all` skips."""
    lines = screen_lines(text)
    upgrades: list[WingetUpgrade] = []
    index = 0
    while index < len(lines) - 1:
        if not (_RULE.match(lines[index + 1].strip()) and lines[index].strip()):
            index += 1
            continue
        header, body = lines[index], []
        lead_in = next((line for line in reversed(lines[:index]) if line.strip()), "")
        explicit_only = lead_in.rstrip().endswith((":", "："))
        index += 2
        while index < len(lines) and lines[index].strip():
            body.append(lines[index])
            index += 1
        starts = _column_starts(header, body)
        for line in body:
            cells = _split(line, starts)
            if cells is None:
                break
            source = cells[4] if len(cells) == 5 else ""
            upgrades.append(WingetUpgrade(*cells[:4], source, explicit_only))
    return upgrades


# --- records ---------------------------------------------------------------------


def upgrade_records(upgrades: list[WingetUpgrade]) -> list[dict[str, Any]]:
    """UpdateRecord JSON for each upgrade. A row whose id or available version winget cut
    short (a narrow console) cannot be upgraded by id, so it is logged, not reported."""
    records = []
    for upgrade in upgrades:
        if upgrade.package_id.endswith(ELLIPSIS) or upgrade.available.endswith(ELLIPSIS):
            _refused(upgrade, "winget cut its id or version short to fit the console width")
            continue
        details: dict[str, Any] = {"name": upgrade.name}
        if upgrade.name.endswith(ELLIPSIS):
            details["name_truncated"] = True
        current = upgrade.version
        if current.lower() == "unknown" or not _is_version(current):
            details["installed_version"] = current  # "Unknown", "< 2.0", ...
            current = ""
        if upgrade.explicit_only:
            details["requires_explicit_upgrade"] = True
        record = UpdateRecord(
            source="winget",
            package=upgrade.package_id,
            available_version=upgrade.available,
            current_version=current,
            origin=upgrade.source,
            held=upgrade.explicit_only,
            details=details,
        )
        try:
            records.append(UpdateRecord.from_json(record.to_json()).to_json())
        except ProtocolError as exc:
            _refused(upgrade, str(exc))
    return records


def _is_version(text: str) -> bool:
    try:
        check_version(text)
    except ProtocolError:
        return False
    return True


def _refused(upgrade: WingetUpgrade, why: str) -> None:
    log_event(
        logger,
        logging.WARNING,
        "agent.update_refused",
        f"winget upgrade {upgrade.package_id!r} left out: {why}",
        source="winget",
        package=upgrade.package_id,
    )


# Windows only: these HRESULT exit codes come from a real winget; tests call this directly.
def install_outcome(code: int) -> tuple[str, bool]:
    """("installed" | "unchanged" | "failed", reboot needed) for a winget exit code."""
    code &= 0xFFFFFFFF
    if code == 0:
        return "installed", False
    if code in (
        REBOOT_REQUIRED_TO_FINISH,
        REBOOT_INITIATED,
        MSI_REBOOT_REQUIRED,
        MSI_REBOOT_INITIATED,
    ):
        return "installed", True
    if code in (UPDATE_NOT_APPLICABLE, PACKAGE_ALREADY_INSTALLED):
        return "unchanged", False
    return "failed", code == REBOOT_REQUIRED_TO_INSTALL


def check_ids(packages: Sequence[str]) -> list[str]:
    if isinstance(packages, str) or not packages:
        raise ProtocolError("packages: a non-empty list of winget package ids")
    return list(dict.fromkeys(check_package_name("winget", name) for name in packages))


# --- running ---------------------------------------------------------------------


def find_winget() -> str | None:
    """winget on PATH, else (Windows only) the newest App Installer's winget.exe: the
    LocalSystem account a service runs as has no `winget` alias on its PATH."""
    found = shutil.which("winget")
    if found or sys.platform != "win32":
        return found
    # Windows only: App Installer's install folder, readable by LocalSystem.
    apps = Path(os.environ.get("PROGRAMFILES", r"C:\Program Files"), "WindowsApps")
    candidates = list(apps.glob("Microsoft.DesktopAppInstaller_*__8wekyb3d8bbwe/winget.exe"))
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


def _winget() -> str:
    found = find_winget()
    if found is None:
        raise WingetFailed("winget is not installed (App Installer from the Microsoft Store)")
    return found


class WingetScanner:
    name = "winget"

    def __init__(self, timeout_s: float = SCAN_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def available(self) -> bool:
        return find_winget() is not None

    def scan(self) -> list[dict[str, Any]]:
        return upgrade_records(self.list_upgrades()[0])

    def list_upgrades(self) -> tuple[list[WingetUpgrade], str]:
        listed = run([_winget(), *LIST_ARGS], timeout_s=self.timeout_s)
        code = exit_code(listed)
        if code == NO_APPLICATIONS_FOUND:
            return [], listed.stdout
        if code != 0:
            tail = (listed.stdout.strip() or listed.stderr.strip())[-500:]
            raise WingetFailed(f"winget upgrade exit 0x{code:08X}: {tail}")
        return parse_upgrade_table(listed.stdout), listed.stdout


class WingetInstaller:
    source = "winget"

    def __init__(self, timeout_s: float = INSTALL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def dry_run(self, packages: Sequence[str]) -> DryRunResult:
        """winget has no dry run: this says which of `packages` would be upgraded to
        what, from a fresh listing. Ids not listed are under "missing"."""
        ids = check_ids(packages)
        upgrades, raw = WingetScanner(self.timeout_s).list_upgrades()
        by_id = {u.package_id: u for u in upgrades}
        return DryRunResult(
            upgrades=tuple(
                PlannedChange(
                    package=i,
                    from_version=by_id[i].version,
                    to_version=by_id[i].available,
                    repository=by_id[i].source,
                )
                for i in ids
                if i in by_id
            ),
            missing=tuple(i for i in ids if i not in by_id),
            raw=raw[:RAW_OUTPUT_CHARS],
        )

    def install(self, packages: Sequence[str], on_output: Callable[[str], None]) -> InstallResult:
        """Upgrade each id in turn; one failing package does not stop the others.
        `installed` lists {"package", "from", "to"}, "to" as winget announced it."""
        ids = check_ids(packages)
        winget = _winget()
        installed: list[InstalledPackage] = []
        outcome: dict[str, list[str]] = {"unchanged": [], "failed": []}
        reboot_required = False
        output = ""
        for package_id in ids:
            on_output(f"== winget upgrade --id {package_id}")
            command = [winget, "upgrade", "--id", package_id, *INSTALL_ARGS]
            done = run(command, timeout_s=self.timeout_s, on_line=_screen(on_output))
            shown = screen_lines(done.stdout + done.stderr)
            result, reboot = install_outcome(done.returncode)
            if result == "installed":
                installed.append(
                    InstalledPackage(package_id, to_version=announced_version(shown, package_id))
                )
            else:
                outcome[result].append(package_id)
            reboot_required = reboot_required or reboot
            output += "\n".join(shown) + f"\n[{package_id}: exit 0x{exit_code(done):08X}]\n"
        return InstallResult(
            installed=tuple(installed),
            failed=tuple(outcome["failed"]),
            unchanged=tuple(outcome["unchanged"]),
            output_tail=output[-OUTPUT_TAIL_CHARS:],
            reboot_required=reboot_required,
        )


def announced_version(lines: list[str], package_id: str) -> str:
    """The version in winget's first line, "Found Git [Git.Git] Version 2.45.1" (the
    words are translated; the id in brackets and the version at the end are not)."""
    for line in lines:
        if f"[{package_id}]" in line:
            last = line.split()[-1]
            return last if last != f"[{package_id}]" else ""
    return ""


def _screen(on_output: Callable[[str], None]) -> Callable[[str], None]:
    """Pass on what a line finally shows, without the redrawn progress bars."""

    def forward(line: str) -> None:
        for shown in screen_lines(line):
            if shown.strip():
                on_output(shown)

    return forward


register("winget", scanner=lambda config: WingetScanner(), installer=WingetInstaller)
