"""Windows Update: the decisions (names, severity, security, reboot) made on recorded
Windows Update Agent properties, and the COM and registry calls kept to Windows.

The COM objects themselves only exist on Windows; here the search and install steps are
handed in as plain functions, and `update_properties` reads stand-in objects shaped like
the COM ones (collections with Count and Item)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.scanners import windows_update
from agent.scanners.windows_update import (
    PENDING_FILE_RENAMES,
    REBOOT_PENDING,
    WU_REBOOT_REQUIRED,
    WindowsUpdateInstaller,
    WindowsUpdateScanner,
    install_summary,
    reboot_pending_from_registry,
    records_from_updates,
    update_properties,
)
from kernel.protocol import ProtocolError, UpdateRecord

FIXTURES = Path(__file__).parents[3] / "fixtures" / "windows_update"
no_database = settings(database=None, deadline=None)


def recorded(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def summary(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["package"],
            r["available_version"],
            r["severity"],
            r["security"],
            r["reboot_required"],
            r["size_bytes"],
            r["origin"],
            r["advisories"],
        )
        for r in records
    ]


def test_windows_11_updates_become_these_records() -> None:
    records = records_from_updates(recorded("pending-updates-win11.json"))
    for record in records:
        assert UpdateRecord.from_json(record).to_json() == record
    assert summary(records) == [
        (
            "KB5037771",
            "rev1",
            "critical",
            True,
            True,
            1048285675,
            "Windows 11",
            ["CVE-2024-30051", "CVE-2024-30040", "CVE-2024-30044"],
        ),
        (
            "KB5037591",
            "rev200",
            "important",
            True,
            True,
            74567234,
            "Windows 11",
            ["CVE-2024-30045"],
        ),
        (
            "KB2267602",
            "1.411.180.0",
            "unknown",
            False,
            False,
            98123456,
            "Microsoft Defender Antivirus",
            [],
        ),
        ("KB890830", "5.124", "unknown", False, False, 78912345, "Windows 11", []),
        (
            "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b77",
            "31.0.101.5382",
            "unknown",
            False,
            True,
            612345678,
            "Windows 11 Client, version 22H2 and later, Servicing Drivers",
            [],
        ),
        (
            "KB5002575",
            "rev201",
            "moderate",
            True,
            False,
            45123456,
            "Office 2016",
            ["CVE-2024-30042"],
        ),
    ]
    assert all(r["source"] == "windows_update" for r in records)
    driver = records[4]["details"]
    assert driver["optional"] is True
    assert driver["kb_articles"] == []
    assert driver["update_id"] == "9D8C7B6A-5F4E-4D3C-8B2A-1F0E9D8C7B77"
    assert records[0]["details"]["title"].endswith("(KB5037771)")
    assert records[0]["details"]["categories"] == ["Security Updates", "Windows 11"]


def test_localised_security_categories_are_recognised_by_their_classification_id() -> None:
    records = records_from_updates(recorded("pending-updates-server2022-de.json"))
    assert summary(records) == [
        (
            "KB5037782",
            "rev1",
            "unknown",
            True,
            True,
            377522176,
            "Microsoft Server Operating System-21H2",
            [],
        ),
        ("KB5038000", "rev2", "low", True, False, 1234567, "Visual Studio 2017", ["MS17-010"]),
        (
            "KB890830",
            "5.124",
            "unknown",
            False,
            False,
            78912345,
            "Microsoft Server Operating System-21H2",
            [],
        ),
        (
            "f1e2d3c4-b5a6-4789-9abc-def012345668",
            "5.124",
            "unknown",
            False,
            False,
            None,
            "Windows Update",
            [],
        ),
    ]


def test_a_kb_claimed_by_an_earlier_update_names_the_later_one_by_its_update_id() -> None:
    names = windows_update.package_names(recorded("pending-updates-server2022-de.json"))
    assert names[2:] == ["KB890830", "f1e2d3c4-b5a6-4789-9abc-def012345668"]


def one_update(**changes: Any) -> dict[str, Any]:
    update = recorded("pending-updates-win11.json")[0]
    update.update(changes)
    return update


@pytest.mark.parametrize(
    ("msrc", "severity", "security"),
    [
        ("Critical", "critical", True),
        ("Important", "important", True),
        ("Moderate", "moderate", True),
        ("Low", "low", True),
        ("Unspecified", "unknown", True),  # set, so a security update of unrated severity
        ("", "unknown", False),
        (None, "unknown", False),
    ],
)
def test_msrc_severity_gives_severity_and_security(
    msrc: str | None, severity: str, security: bool
) -> None:
    update = one_update(MsrcSeverity=msrc, Categories=[])
    [record] = records_from_updates([update])
    assert (record["severity"], record["security"]) == (severity, security)


@pytest.mark.parametrize(("behaviour", "reboot"), [(0, False), (1, True), (2, True)])
def test_reboot_behaviour_other_than_never_means_a_reboot(behaviour: int, reboot: bool) -> None:
    [record] = records_from_updates(
        [one_update(InstallationBehavior={"RebootBehavior": behaviour})]
    )
    assert record["reboot_required"] is reboot


def test_an_update_with_a_bad_id_is_left_out_not_sent() -> None:
    bad = one_update(KBArticleIDs=[], Identity={"UpdateID": "../../etc", "RevisionNumber": 1})
    assert records_from_updates([bad, one_update()]) == records_from_updates([one_update()])


@pytest.mark.parametrize(
    ("present", "pending"),
    [
        ({REBOOT_PENDING}, True),
        ({WU_REBOOT_REQUIRED}, True),
        ({PENDING_FILE_RENAMES}, True),
        ({"Component Based Servicing\\RebootPending"}, True),
        ({"WindowsUpdate\\Auto Update\\RebootRequired"}, True),
        ({"session manager\\pendingfilerenameoperations"}, True),
        ({REBOOT_PENDING, WU_REBOOT_REQUIRED}, True),
        (set(), False),
        ({"SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"}, False),
        ({"RebootPending"}, False),
    ],
)
def test_reboot_is_pending_when_any_of_the_registry_markers_is_present(
    present: set[str], pending: bool
) -> None:
    assert reboot_pending_from_registry(present) is pending


# --- the COM layer, with stand-ins ------------------------------------------------


class Collection:
    """Shaped like a COM collection: Count and Item(i), nothing else."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self.Count = len(items)

    def Item(self, index: int) -> Any:
        return self._items[index]


def com_update(recorded_update: dict[str, Any]) -> SimpleNamespace:
    class Moment:
        def isoformat(self) -> str:
            return recorded_update["LastDeploymentChangeTime"] + "T00:00:00"

    return SimpleNamespace(
        Title=recorded_update["Title"],
        KBArticleIDs=Collection(recorded_update["KBArticleIDs"]),
        MsrcSeverity=recorded_update["MsrcSeverity"],
        Categories=Collection([SimpleNamespace(**c) for c in recorded_update["Categories"]]),
        CveIDs=Collection(recorded_update["CveIDs"]),
        SecurityBulletinIDs=Collection(recorded_update["SecurityBulletinIDs"]),
        RebootRequired=recorded_update["RebootRequired"],
        InstallationBehavior=SimpleNamespace(**recorded_update["InstallationBehavior"]),
        MaxDownloadSize=recorded_update["MaxDownloadSize"],
        Identity=SimpleNamespace(**recorded_update["Identity"]),
        Type=recorded_update["Type"],
        BrowseOnly=recorded_update["BrowseOnly"],
        IsDownloaded=recorded_update["IsDownloaded"],
        LastDeploymentChangeTime=Moment(),
    )


def test_update_properties_reads_what_the_fixtures_record() -> None:
    for update in recorded("pending-updates-win11.json"):
        expected = {**update, "MsrcSeverity": update["MsrcSeverity"] or ""}
        assert update_properties(com_update(update)) == expected


def test_scan_turns_the_search_result_into_records() -> None:
    scanner = WindowsUpdateScanner(search=lambda: recorded("pending-updates-win11.json"))
    assert [r["package"] for r in scanner.scan()][:2] == ["KB5037771", "KB5037591"]


@pytest.mark.skipif(sys.platform == "win32", reason="checks the behaviour off Windows")
def test_off_windows_the_scanner_is_unavailable_and_the_com_calls_cannot_run() -> None:
    assert not WindowsUpdateScanner().available()
    with pytest.raises(ImportError):
        windows_update.pending_update_properties()
    with pytest.raises(ImportError):
        windows_update.registry_keys_present()


def test_on_windows_without_pywin32_the_scanner_is_unavailable(monkeypatch) -> None:
    monkeypatch.setattr(windows_update.sys, "platform", "win32")
    monkeypatch.setattr(windows_update.importlib.util, "find_spec", lambda name: None)
    assert not WindowsUpdateScanner().available()


def test_dry_run_names_the_pending_updates_and_the_missing_ones() -> None:
    installer = WindowsUpdateInstaller(search=lambda: recorded("pending-updates-win11.json"))
    plan = installer.dry_run(
        ["KB5037771", "9D8C7B6A-5F4E-4D3C-8B2A-1F0E9D8C7B77", "KB1234567"]
    ).to_json()
    assert [(u["package"], u["to"]) for u in plan["upgrades"]] == [
        ("KB5037771", "rev1"),
        ("9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b77", "31.0.101.5382"),
    ]
    assert plan["missing"] == ["KB1234567"]


def test_install_reports_each_update_by_its_result_code() -> None:
    asked: list[list[str]] = []

    def install(names, on_output):
        asked.append(list(names))
        on_output("installing")
        return {"KB5037771": 2, "KB5037591": 3, "KB5002575": 4}, True, ["KB1234567"]

    streamed: list[str] = []
    installer = WindowsUpdateInstaller(search=list, install=install)
    result = installer.install(
        ["KB5037771", "KB5037591", "KB5002575", "KB1234567"], streamed.append
    ).to_json()
    assert asked == [["KB5037771", "KB5037591", "KB5002575", "KB1234567"]]
    assert (
        result
        == install_summary(
            {"KB5037771": 2, "KB5037591": 3, "KB5002575": 4}, True, ["KB1234567"], "installing"
        ).to_json()
    )
    assert [i["package"] for i in result["installed"]] == ["KB5037771", "KB5037591"]
    assert result["failed"] == ["KB5002575"]
    assert result["unchanged"] == ["KB1234567"]
    assert result["reboot_required"] is True
    assert streamed == ["installing"]


@pytest.mark.parametrize(
    "name", ["KB5037771; shutdown /r", "../KB5037771", "-KB5037771", "KB12", "", "KB5037771 KB1"]
)
def test_malicious_names_are_refused_before_windows_update_is_asked(name: str) -> None:
    def must_not_run(*args: Any) -> Any:
        raise AssertionError("Windows Update was asked")

    installer = WindowsUpdateInstaller(search=must_not_run, install=must_not_run)
    with pytest.raises(ProtocolError, match="not a valid windows_update name"):
        installer.dry_run(["KB5037771", name])
    with pytest.raises(ProtocolError, match="not a valid windows_update name"):
        installer.install([name], lambda line: None)


# --- robustness ------------------------------------------------------------------

UPDATES = st.fixed_dictionaries(
    {
        "Title": st.text(max_size=80),
        "KBArticleIDs": st.lists(st.one_of(st.text(max_size=10), st.from_regex(r"[0-9]{6,8}"))),
        "MsrcSeverity": st.one_of(st.none(), st.text(max_size=12)),
        "Categories": st.lists(
            st.fixed_dictionaries(
                {
                    "Name": st.text(max_size=20),
                    "CategoryID": st.text(max_size=36),
                    "Type": st.text(),
                }
            ),
            max_size=3,
        ),
        "CveIDs": st.lists(st.text(max_size=20), max_size=3),
        "InstallationBehavior": st.fixed_dictionaries({"RebootBehavior": st.integers(0, 2)}),
        "MaxDownloadSize": st.integers(0, 2**40),
        "Identity": st.fixed_dictionaries(
            {
                "UpdateID": st.one_of(st.uuids().map(str), st.text()),
                "RevisionNumber": st.integers(0, 999),
            }
        ),
        "Type": st.integers(1, 2),
    }
)


@no_database
@given(updates=st.lists(UPDATES, max_size=5))
def test_whatever_windows_update_says_gives_valid_records_or_none(updates) -> None:
    for record in records_from_updates(updates):
        assert UpdateRecord.from_json(record).to_json() == record


def test_scanner_and_installer_use_the_windows_update_source() -> None:
    assert WindowsUpdateScanner.name == WindowsUpdateInstaller.source == "windows_update"
