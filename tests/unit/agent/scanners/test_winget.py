"""The winget scanner reads `winget upgrade` tables by column position in any language,
and the installer upgrades approved ids one by one, never an unchecked id.

End to end tests run a fake `winget`, first on PATH, that prints a recorded output from
tests/fixtures/winget/ and logs its arguments."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.scanners import winget as winget_module
from agent.scanners.winget import (
    INSTALL_ARGS,
    LIST_ARGS,
    WingetFailed,
    WingetInstaller,
    WingetScanner,
    WingetUpgrade,
    install_outcome,
    parse_upgrade_table,
    screen_lines,
    upgrade_records,
)
from kernel.protocol import ProtocolError, UpdateRecord

FIXTURES = Path(__file__).parents[3] / "fixtures" / "winget"
no_database = settings(database=None, deadline=None)

FAKE_WINGET = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
routes = json.loads((here / "routes.json").read_text())
command = " ".join(sys.argv[1:])
for prefix in sorted(routes, key=len, reverse=True):
    if command.startswith(prefix):
        fixture, code = routes[prefix]
        if fixture:
            sys.stdout.buffer.write(pathlib.Path(fixture).read_bytes())
        sys.exit(code)
sys.exit(3)
"""


class FakeWinget:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.routes: dict[str, tuple[str, int]] = {}
        tool = bin_dir / "winget"
        tool.write_text(FAKE_WINGET.format(python=sys.executable))
        tool.chmod(0o755)

    def route(self, arguments: str, fixture: str = "", exit_code: int = 0) -> None:
        self.routes[arguments] = (str(FIXTURES / fixture) if fixture else "", exit_code)
        (self.bin_dir / "routes.json").write_text(json.dumps(self.routes))

    def calls(self) -> list[list[str]]:
        log = self.bin_dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def winget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeWinget:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return FakeWinget(bin_dir)


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


# --- parsing recorded outputs ----------------------------------------------------


def test_english_table_is_read_by_the_column_positions_of_its_header() -> None:
    rows = parse_upgrade_table(fixture_text("upgrade-en.txt"))
    assert [(r.name, r.package_id, r.version, r.available, r.source) for r in rows] == [
        (
            "Microsoft Visual C++ 2015-2022 Re…",
            "Microsoft.VCRedist.2015+.x64",
            "14.38.33135.0",
            "14.40.33810.0",
            "winget",
        ),
        ("Mozilla Firefox (x64 en-US)", "Mozilla.Firefox", "125.0.3", "126.0", "winget"),
        ("Git", "Git.Git", "2.44.0", "2.45.1", "winget"),
        ("Microsoft Edge", "Microsoft.Edge", "124.0.2478.80", "124.0.2478.97", "winget"),
        ("7-Zip 23.01 (x64)", "7zip.7zip", "23.01", "24.05", "winget"),
        ("PowerToys (Preview) x64", "Microsoft.PowerToys", "0.80.1", "0.81.0", "winget"),
        ("Zoom Workplace (64-bit)", "Zoom.Zoom", "Unknown", "6.0.11.39959", "winget"),
        (
            "Spotify",
            "Spotify.Spotify",
            "1.2.37.701.ge66eb7bc",
            "1.2.38.720.ga4a70a0e",
            "winget",
        ),
        ("WhatsApp", "9NKSQGP7F2NH", "2.2419.11.0", "2.2420.8.0", "msstore"),
        (
            "Visual Studio Build Tools 2022 (2)",
            "Microsoft.VisualStudio.2022.Build…",
            "17.9.6",
            "17.10.0",
            "winget",
        ),
        ("Discord", "Discord.Discord", "1.0.9042", "1.0.9147", "winget"),
    ]


def test_only_the_table_after_the_explicit_targeting_heading_is_explicit_only() -> None:
    rows = parse_upgrade_table(fixture_text("upgrade-en.txt"))
    assert [r.package_id for r in rows if r.explicit_only] == ["Discord.Discord"]


def test_german_headings_without_a_source_column_read_the_same() -> None:
    rows = parse_upgrade_table(fixture_text("upgrade-de.txt"))
    assert rows == [
        WingetUpgrade("Notepad++ (64-bit x64)", "Notepad++.Notepad++", "8.6.5", "8.6.7"),
        WingetUpgrade(
            "LibreOffice 24.2.2.2", "TheDocumentFoundation.LibreOffice", "24.2.2.2", "24.2.3.2"
        ),
        WingetUpgrade("Größenänderungs-Werkzeug für Bilder", "Vendor.BildGroesse", "1.0", "1.1"),
    ]


def test_double_width_headings_and_names_keep_the_columns_aligned() -> None:
    rows = parse_upgrade_table(fixture_text("upgrade-zh-cn.txt"))
    assert [(r.name, r.package_id, r.version, r.available) for r in rows] == [
        ("微信", "Tencent.WeChat", "3.9.10.19", "3.9.10.27"),
        ("腾讯会议", "Tencent.TencentMeeting", "3.24.1.401", "3.25.2.433"),
        ("Git", "Git.Git", "2.44.0", "2.45.1"),
        (
            "微软 Visual Studio Code 用户版（一个很长很…",
            "Microsoft.VisualStudioCode",
            "1.88.1",
            "1.89.1",
        ),
    ]


def test_nothing_to_upgrade_is_an_empty_list() -> None:
    assert parse_upgrade_table(fixture_text("upgrade-none.txt")) == []


def test_a_header_that_is_not_an_upgrade_table_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="header not understood"):
        parse_upgrade_table("Name   Id   Source\n------------------\nGit   Git.Git winget\n")


def test_redrawn_progress_bars_leave_only_their_final_state() -> None:
    lines = screen_lines(fixture_text("install-git.txt"))
    assert "  ██████████████████████████████  65.5 MB / 65.5 MB" in lines
    assert not any("\r" in line or "▒" in line for line in lines)


def test_records_mark_unknown_versions_cut_names_and_explicit_only_packages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="redflag.agent.scanners.winget"):
        records = upgrade_records(parse_upgrade_table(fixture_text("upgrade-en.txt")))
    for record in records:
        assert UpdateRecord.from_json(record).to_json() == record
    by_id = {r["package"]: r for r in records}
    assert list(by_id) == [
        "Microsoft.VCRedist.2015+.x64",
        "Mozilla.Firefox",
        "Git.Git",
        "Microsoft.Edge",
        "7zip.7zip",
        "Microsoft.PowerToys",
        "Zoom.Zoom",
        "Spotify.Spotify",
        "9NKSQGP7F2NH",
        "Discord.Discord",
    ]
    assert (by_id["Git.Git"]["current_version"], by_id["Git.Git"]["available_version"]) == (
        "2.44.0",
        "2.45.1",
    )
    assert by_id["Zoom.Zoom"]["current_version"] == ""
    assert by_id["Zoom.Zoom"]["details"]["installed_version"] == "Unknown"
    assert by_id["Microsoft.VCRedist.2015+.x64"]["details"]["name_truncated"] is True
    assert by_id["9NKSQGP7F2NH"]["origin"] == "msstore"
    assert by_id["Discord.Discord"]["held"] is True
    assert not by_id["Git.Git"]["held"]
    assert "Microsoft.VisualStudio.2022.Build…" in caplog.text  # cut id: logged, not sent


# --- running a fake winget -------------------------------------------------------


def test_scan_runs_winget_upgrade_and_reports_the_records(winget: FakeWinget) -> None:
    winget.route("upgrade --include-unknown", "upgrade-en.txt")
    scanner = WingetScanner()
    assert scanner.available()
    assert len(scanner.scan()) == 10
    assert winget.calls() == [list(LIST_ARGS)]


def test_scan_of_a_host_without_upgrades_is_empty(winget: FakeWinget) -> None:
    winget.route("upgrade", "upgrade-none.txt")
    assert WingetScanner().scan() == []


def test_a_winget_error_fails_the_scan_with_its_code(winget: FakeWinget) -> None:
    winget.route("upgrade", "upgrade-none.txt", exit_code=2)
    with pytest.raises(WingetFailed, match="exit 0x00000002"):
        WingetScanner().scan()


def test_scanner_is_unavailable_without_winget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not WingetScanner().available()


def test_dry_run_says_what_each_id_would_become_and_which_are_not_pending(
    winget: FakeWinget,
) -> None:
    winget.route("upgrade --include-unknown", "upgrade-en.txt")
    plan = WingetInstaller().dry_run(["Git.Git", "Zoom.Zoom", "Vendor.Gone"]).to_json()
    assert plan["upgrades"] == [
        {
            "package": "Git.Git",
            "from": "2.44.0",
            "to": "2.45.1",
            "repository": "winget",
        },
        {
            "package": "Zoom.Zoom",
            "from": "Unknown",
            "to": "6.0.11.39959",
            "repository": "winget",
        },
    ]
    assert plan["missing"] == ["Vendor.Gone"]
    assert plan["removals"] == []


def test_install_upgrades_each_id_and_streams_what_the_console_shows(
    winget: FakeWinget,
) -> None:
    winget.route("upgrade --id Git.Git", "install-git.txt")
    winget.route("upgrade --id Mozilla.Firefox", "install-git.txt", exit_code=1)
    streamed: list[str] = []
    result = WingetInstaller().install(["Git.Git", "Mozilla.Firefox"], streamed.append).to_json()
    assert result["installed"] == [{"package": "Git.Git", "from": "", "to": "2.45.1"}]
    assert result["failed"] == ["Mozilla.Firefox"]
    assert result["reboot_required"] is False
    assert "Successfully installed" in streamed
    assert "  ██████████████████████████████  65.5 MB / 65.5 MB" in streamed
    assert not any("▒" in line for line in streamed)
    assert "[Mozilla.Firefox: exit 0x00000001]" in result["output_tail"]
    assert winget.calls() == [
        ["upgrade", "--id", "Git.Git", *INSTALL_ARGS],
        ["upgrade", "--id", "Mozilla.Firefox", *INSTALL_ARGS],
    ]


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0, ("installed", False)),
        (0x8A150109, ("installed", True)),  # restart to finish installation
        (-1978334967, ("installed", True)),  # the same, as a signed HRESULT
        (3010, ("installed", True)),  # an MSI asking for a reboot
        (0x8A15002B, ("unchanged", False)),  # no applicable update
        (-1978335135, ("unchanged", False)),  # already installed
        (0x8A15010A, ("failed", True)),  # restart, then try again
        (0x8A150014, ("failed", False)),  # no package found
        (1, ("failed", False)),
    ],
)
def test_winget_exit_codes_decide_the_outcome(code: int, outcome: tuple[str, bool]) -> None:
    assert install_outcome(code) == outcome


MALICIOUS = ["Git.Git; calc.exe", "../x", "-h", "--source=evil", "Git Git", "a&b", "", "Git.Git|x"]


@pytest.mark.parametrize("package_id", MALICIOUS)
def test_malicious_ids_are_refused_before_winget_runs(winget: FakeWinget, package_id: str) -> None:
    installer = WingetInstaller()
    with pytest.raises(ProtocolError, match="not a valid winget name"):
        installer.install(["Git.Git", package_id], lambda line: None)
    with pytest.raises(ProtocolError, match="not a valid winget name"):
        installer.dry_run([package_id])
    assert winget.calls() == []


# --- robustness ------------------------------------------------------------------

WORDS = ["Name", "Id", "Version", "Available", "Source", "Git", "Git.Git", "2.45.1", "winget"]
ODDITIES = ["微信", "…", "Unknown", "< 2.0", "-", "----------", "\r", "\b", "\x1b[0G", ":", "："]
CELLS = st.sampled_from([*WORDS, *ODDITIES, ""])
TABLES = st.lists(
    st.lists(st.tuples(CELLS, st.integers(0, 6)), max_size=6).map(
        lambda cells: "".join(text + " " * pad for text, pad in cells)
    ),
    max_size=20,
).map("\n".join)


@no_database
@given(text=st.one_of(st.text(), TABLES))
def test_random_text_never_crashes_the_parser(text: str) -> None:
    try:
        rows = parse_upgrade_table(text)
    except ValueError as exc:
        assert "header not understood" in str(exc)
        return
    for record in upgrade_records(rows):
        UpdateRecord.from_json(record)


def test_on_windows_winget_is_found_in_app_installer_when_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service runs as LocalSystem, which has no `winget` alias on its PATH."""
    apps = tmp_path / "WindowsApps"
    older = apps / "Microsoft.DesktopAppInstaller_1.21.10120.0_x64__8wekyb3d8bbwe" / "winget.exe"
    newer = apps / "Microsoft.DesktopAppInstaller_1.22.11261.0_x64__8wekyb3d8bbwe" / "winget.exe"
    for path, mtime in ((older, 1_700_000_000), (newer, 1_710_000_000)):
        path.parent.mkdir(parents=True)
        path.write_text("")
        os.utime(path, (mtime, mtime))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PROGRAMFILES", str(tmp_path))
    monkeypatch.setattr(winget_module.sys, "platform", "win32")
    assert winget_module.find_winget() == str(newer)


def test_installers_name_the_source_the_daemon_files_them_under() -> None:
    assert WingetInstaller.source == "winget"
