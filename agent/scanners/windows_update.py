"""Windows Update through the Windows Update Agent COM API, and whether Windows has a
reboot pending. pywin32 and winreg are imported only inside the functions marked
"Windows only"; everything that decides (records, names, outcomes, reboot) works on
plain values and is tested against recorded properties in tests/fixtures/windows_update/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.scanners.registry import register
from kernel.install_results import DryRunResult, InstalledPackage, InstallResult, PlannedChange
from kernel.logs import log_event
from kernel.protocol import ProtocolError, UpdateRecord, check_package_name

logger = logging.getLogger("redflag.agent.scanners.windows_update")

SEARCH_CRITERIA = "IsInstalled=0 and IsHidden=0"
CLIENT_APPLICATION_ID = "RedFlag"
SECURITY_UPDATES_CATEGORY = "0fa1201d-4330-4fa8-8ae9-b877473b6441"  # the classification id
MSRC_SEVERITIES = {
    "critical": "critical",
    "important": "important",
    "moderate": "moderate",
    "low": "low",
}
MAX_ADVISORIES = 200
# IUpdateInstaller results (OperationResultCode)
SUCCEEDED, SUCCEEDED_WITH_ERRORS = 2, 3
_TITLE_VERSIONS = (
    re.compile(r"\(Version ([0-9]+(?:\.[0-9]+)+)\)"),  # Defender intelligence, Office
    re.compile(r"\bv([0-9]+(?:\.[0-9]+)+)\b"),  # Malicious Software Removal Tool
)
# A driver update (UpdateType 2) names its version at the end of its title.
_DRIVER_VERSION = re.compile(r" - ([0-9]+(?:\.[0-9]+)+)$")
_ADVISORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")

# Where Windows records that a reboot is pending, under HKEY_LOCAL_MACHINE. The last is
# a value, not a key: it counts when it holds at least one file to rename.
REBOOT_PENDING = (
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending"
)
WU_REBOOT_REQUIRED = (
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired"
)
PENDING_FILE_RENAMES = (
    r"SYSTEM\CurrentControlSet\Control\Session Manager\PendingFileRenameOperations"
)
REBOOT_KEYS = (REBOOT_PENDING, WU_REBOOT_REQUIRED, PENDING_FILE_RENAMES)


class WindowsUpdateFailed(RuntimeError):
    """The Windows Update Agent refused or failed; the message holds its HRESULT."""


# --- decisions on plain values ---------------------------------------------------


def reboot_pending_from_registry(keys_present: set[str]) -> bool:
    """Whether any of REBOOT_KEYS is among `keys_present`, each given as its path under
    HKLM or as its last parts, at least two (`Component Based Servicing\\RebootPending`,
    `Session Manager\\PendingFileRenameOperations`); letter case does not matter."""
    for present in keys_present:
        parts = present.lower().strip("\\").split("\\")
        if len(parts) >= 2 and any(
            key.lower().split("\\")[-len(parts) :] == parts for key in REBOOT_KEYS
        ):
            return True
    return False


def package_names(updates: list[dict[str, Any]]) -> list[str]:
    """The name each update is reported and approved by: "KB1234567" when it has a
    knowledge-base article no earlier update claimed, else its update GUID."""
    names: list[str] = []
    for update in updates:
        kbs = [_kb(kb) for kb in update.get("KBArticleIDs") or []]
        name = next((kb for kb in kbs if kb and kb not in names), "")
        names.append(name or str(update.get("Identity", {}).get("UpdateID", "")).lower())
    return names


def _kb(article: object) -> str:
    digits = str(article).upper().removeprefix("KB")
    return f"KB{digits}" if digits.isdigit() and 6 <= len(digits) <= 8 else ""


def available_version(update: dict[str, Any]) -> str:
    """Updates have no version of their own: the one in the title where there is one
    (definitions, drivers, the removal tool), else the update's revision number."""
    title = str(update.get("Title", ""))
    patterns = (*_TITLE_VERSIONS, _DRIVER_VERSION) if update.get("Type") == 2 else _TITLE_VERSIONS
    for pattern in patterns:
        if match := pattern.search(title):
            return match[1]
    return f"rev{int(update.get('Identity', {}).get('RevisionNumber') or 0)}"


def records_from_updates(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """UpdateRecord JSON for update properties as `update_properties` records them."""
    records = []
    for name, update in zip(package_names(updates), updates):
        categories = update.get("Categories") or []
        msrc = str(update.get("MsrcSeverity") or "").strip()
        security = bool(msrc) or any(
            str(c.get("CategoryID", "")).lower() == SECURITY_UPDATES_CATEGORY
            or c.get("Name") == "Security Updates"
            for c in categories
        )
        reboot_behaviour = int(update.get("InstallationBehavior", {}).get("RebootBehavior") or 0)
        advisories = [
            a
            for a in [*(update.get("CveIDs") or []), *(update.get("SecurityBulletinIDs") or [])]
            if isinstance(a, str) and _ADVISORY.match(a)
        ]
        products = [c.get("Name", "") for c in categories if c.get("Type") == "Product"]
        record = UpdateRecord(
            source="windows_update",
            package=name,
            available_version=available_version(update),
            origin=products[0] if products else "Windows Update",
            severity=MSRC_SEVERITIES.get(msrc.lower(), "unknown"),
            security=security,
            advisories=tuple(dict.fromkeys(advisories))[:MAX_ADVISORIES],
            size_bytes=int(update.get("MaxDownloadSize") or 0) or None,
            reboot_required=reboot_behaviour != 0 or bool(update.get("RebootRequired")),
            details={
                "title": str(update.get("Title", "")),
                "update_id": str(update.get("Identity", {}).get("UpdateID", "")),
                "kb_articles": [_kb(kb) for kb in update.get("KBArticleIDs") or [] if _kb(kb)],
                "categories": [c.get("Name", "") for c in categories],
                "optional": bool(update.get("BrowseOnly")),
                "downloaded": bool(update.get("IsDownloaded")),
            },
        )
        try:
            records.append(UpdateRecord.from_json(record.to_json()).to_json())
        except ProtocolError as exc:
            log_event(
                logger,
                logging.WARNING,
                "agent.update_refused",
                f"Windows Update listed an update the protocol refuses: {exc}",
                source="windows_update",
                title=str(update.get("Title", ""))[:200],
            )
    return records


def select_updates(
    updates: list[dict[str, Any]], wanted: Sequence[str]
) -> tuple[list[int], list[str]]:
    """(indexes of the updates named in `wanted`, names not found among them)."""
    names = package_names(updates)
    lowered = [name.lower() for name in names]
    chosen = [i for i, name in enumerate(lowered) if name in {w.lower() for w in wanted}]
    missing = [w for w in wanted if w.lower() not in lowered]
    return chosen, missing


def install_summary(
    results: dict[str, int], reboot_required: bool, missing: Sequence[str], output: str = ""
) -> InstallResult:
    """The installer's answer from the result code of each update it tried."""
    succeeded = (SUCCEEDED, SUCCEEDED_WITH_ERRORS)
    return InstallResult(
        installed=tuple(InstalledPackage(n) for n, code in results.items() if code in succeeded),
        failed=tuple(n for n, code in results.items() if code not in succeeded),
        unchanged=tuple(missing),
        output_tail=output[-8192:],
        reboot_required=reboot_required,
    )


def check_names(packages: Sequence[str]) -> list[str]:
    if isinstance(packages, str) or not packages:
        raise ProtocolError("packages: a non-empty list of KB numbers or update ids")
    return list(dict.fromkeys(check_package_name("windows_update", name) for name in packages))


# --- the COM objects -------------------------------------------------------------


def _items(collection: Any) -> list[Any]:
    return [collection.Item(i) for i in range(int(collection.Count))]


def update_properties(update: Any) -> dict[str, Any]:
    """The properties RedFlag uses of one IUpdate, as plain values."""
    when = getattr(update, "LastDeploymentChangeTime", None)
    return {
        "Title": str(update.Title),
        "KBArticleIDs": [str(kb) for kb in _items(update.KBArticleIDs)],
        "MsrcSeverity": str(update.MsrcSeverity or ""),
        "Categories": [
            {"Name": str(c.Name), "CategoryID": str(c.CategoryID), "Type": str(c.Type)}
            for c in _items(update.Categories)
        ],
        "CveIDs": [str(cve) for cve in _items(update.CveIDs)],
        "SecurityBulletinIDs": [str(b) for b in _items(update.SecurityBulletinIDs)],
        "RebootRequired": bool(update.RebootRequired),
        "InstallationBehavior": {"RebootBehavior": int(update.InstallationBehavior.RebootBehavior)},
        "MaxDownloadSize": int(update.MaxDownloadSize or 0),
        "Identity": {
            "UpdateID": str(update.Identity.UpdateID),
            "RevisionNumber": int(update.Identity.RevisionNumber),
        },
        "Type": int(update.Type),
        "BrowseOnly": bool(update.BrowseOnly),
        "IsDownloaded": bool(update.IsDownloaded),
        "LastDeploymentChangeTime": when.isoformat()[:10] if hasattr(when, "isoformat") else "",
    }


# Windows only: pythoncom and win32com come with pywin32, which exists only there.
@contextlib.contextmanager
def _com_apartment() -> Iterator[Any]:
    """A COM apartment for this thread (the daemon scans from worker
    threads) and an update session in it."""
    import pythoncom  # type: ignore[import-not-found]
    import win32com.client  # type: ignore[import-not-found]

    pythoncom.CoInitialize()
    try:
        session = win32com.client.Dispatch("Microsoft.Update.Session")
        session.ClientApplicationID = CLIENT_APPLICATION_ID
        yield session
    finally:
        pythoncom.CoUninitialize()


# Windows only: IUpdateSearcher.Search.
def _search(session: Any) -> list[Any]:
    """The pending updates, as COM objects."""
    try:
        result = session.CreateUpdateSearcher().Search(SEARCH_CRITERIA)
    except Exception as exc:  # pywintypes.com_error carries the WUA HRESULT
        raise WindowsUpdateFailed(f"update search failed: {exc}") from exc
    return _items(result.Updates)


# Windows only: the scanner's default search.
def pending_update_properties() -> list[dict[str, Any]]:
    """Search Windows Update and return each pending update's properties."""
    with _com_apartment() as session:
        return [update_properties(update) for update in _search(session)]


# Windows only: IUpdateDownloader and IUpdateInstaller.
def install_updates(
    names: Sequence[str], on_output: Callable[[str], None]
) -> tuple[dict[str, int], bool, list[str]]:
    """Download and install the named updates. Returns each one's result
    code, whether Windows wants a reboot, and the names not found pending."""
    import win32com.client  # type: ignore[import-not-found]

    with _com_apartment() as session:
        found = _search(session)
        properties = [update_properties(update) for update in found]
        chosen, missing = select_updates(properties, names)
        if not chosen:
            return {}, False, missing
        wanted = win32com.client.Dispatch("Microsoft.Update.UpdateColl")
        for index in chosen:
            if not found[index].EulaAccepted:
                found[index].AcceptEula()
            wanted.Add(found[index])
        every_name = package_names(properties)
        labels = [every_name[i] for i in chosen]
        try:
            on_output(f"downloading {len(chosen)} update(s): {', '.join(labels)}")
            downloader = session.CreateUpdateDownloader()
            downloader.Updates = wanted
            downloader.Download()
            on_output("installing")
            installer = session.CreateUpdateInstaller()
            installer.Updates = wanted
            result = installer.Install()
        except Exception as exc:
            raise WindowsUpdateFailed(f"update install failed: {exc}") from exc
        codes = {label: int(result.GetUpdateResult(j).ResultCode) for j, label in enumerate(labels)}
        for label, code in codes.items():
            on_output(f"{label}: result {code}")
        return codes, bool(result.RebootRequired), missing


# Windows only: winreg is in the standard library on Windows alone.
def registry_keys_present() -> set[str]:
    """Which of REBOOT_KEYS exist (the rename list: holds entries)."""
    import winreg  # type: ignore[import-not-found]

    present = set()
    for key in (REBOOT_PENDING, WU_REBOOT_REQUIRED):
        with contextlib.suppress(OSError), winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key):
            present.add(key)
    parent, value_name = PENDING_FILE_RENAMES.rsplit("\\", 1)
    with contextlib.suppress(OSError), winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, parent) as key:
        value, _ = winreg.QueryValueEx(key, value_name)
        if value:
            present.add(PENDING_FILE_RENAMES)
    return present


# Windows only: reads the registry.
def reboot_pending() -> bool:
    """Whether Windows has a reboot pending."""
    return reboot_pending_from_registry(registry_keys_present())


# --- scanner and installer -------------------------------------------------------


def _on_windows_with_pywin32() -> bool:
    return sys.platform == "win32" and importlib.util.find_spec("win32com") is not None


class WindowsUpdateScanner:
    name = "windows_update"

    def __init__(self, search: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._search = search or pending_update_properties

    def available(self) -> bool:
        return _on_windows_with_pywin32()

    def scan(self) -> list[dict[str, Any]]:
        return records_from_updates(self._search())


class WindowsUpdateInstaller:
    source = "windows_update"

    def __init__(
        self,
        search: Callable[[], list[dict[str, Any]]] | None = None,
        install: Callable[
            [Sequence[str], Callable[[str], None]], tuple[dict[str, int], bool, list[str]]
        ]
        | None = None,
    ) -> None:
        self._search = search or pending_update_properties
        self._install = install or install_updates

    def dry_run(self, packages: Sequence[str]) -> DryRunResult:
        """Which of the named updates are pending, with their size and reboot needs."""
        names = check_names(packages)
        updates = self._search()
        chosen, missing = select_updates(updates, names)
        records = records_from_updates(updates)
        by_name = {r["package"].lower(): r for r in records}
        listed = [package_names(updates)[i] for i in chosen]
        return DryRunResult(
            upgrades=tuple(
                PlannedChange(
                    package=name,
                    to_version=by_name[name.lower()]["available_version"],
                    repository=by_name[name.lower()]["origin"],
                )
                for name in listed
                if name.lower() in by_name
            ),
            missing=tuple(missing),
        )

    def install(self, packages: Sequence[str], on_output: Callable[[str], None]) -> InstallResult:
        names = check_names(packages)
        lines: list[str] = []

        def record(line: str) -> None:
            lines.append(line)
            on_output(line)

        results, reboot, missing = self._install(names, record)
        return install_summary(results, reboot, missing, "\n".join(lines))


register(
    "windows_update",
    scanner=lambda config: WindowsUpdateScanner(),
    installer=WindowsUpdateInstaller,
)
