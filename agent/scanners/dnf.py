"""DNF, and yum on hosts that predate it: pending updates from `check-update` with
severity and advisories from `updateinfo`, dry runs with `--assumeno`, and installs of
exactly an approved set. The parsers below are pure, so recorded outputs test them
(tests/fixtures/dnf/); the classes only run the tool and combine what the parsers say.

Current versions come from one `rpm -qa --qf` call: rpm is always there beside dnf and
yum, it reads only the local database (no repository metadata, no network), and its
`--qf` output is a format we choose rather than a table to take apart.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent.privileges import as_root, can_get_root, sudo_refusal
from agent.process import Completed, run
from agent.scanners.registry import register
from kernel import install_results
from kernel.install_results import TRANSACTION_PARTS, DryRunResult, InstallResult, PlannedChange
from kernel.logs import log_event
from kernel.protocol import ProtocolError, UpdateRecord, check_package_name

logger = logging.getLogger("redflag.agent.scanners.dnf")

SCAN_TIMEOUT_S = 900.0
INSTALL_TIMEOUT_S = 3600.0
RAW_OUTPUT_CHARS = 64 * 1024
OUTPUT_TAIL_CHARS = 8 * 1024
MAX_ADVISORIES = 200  # what one UpdateRecord may carry
# Rows of a transaction table start one space in ("replacing" lines three to five); a
# line indented further carries on the row above, whose values overflowed their columns.
CONTINUATION_INDENT = 8

# A token "name.arch" only counts as a package when its suffix is an rpm architecture:
# that keeps headers, mirror lists and messages out of the results.
ARCH = re.compile(
    r"^(?:noarch|x86_64(?:_v[234])?|i[3-6]86|athlon|geode|aarch64|armv[67]h?n?l|armhfp"
    r"|ppc(?:64(?:le|p7)?)?|s390x?|riscv64|loongarch64|mips64el|ia64|alpha|sparc64|(?:no)?src)$"
)
# Updates to these need a reboot to take effect: the list of dnf's needs-restarting,
# with the split kernel packages of current releases.
REBOOT_PACKAGE = re.compile(
    r"^(?:kernel(?:-rt|-uek)?(?:-core)?|glibc|linux-firmware|systemd|dbus(?:-broker|-daemon)?"
    r"|microcode_ctl)$"
)
SEVERITY_RANK = {"unknown": 0, "low": 1, "moderate": 2, "important": 3, "critical": 4}
ADVISORY_KINDS = ("security", "bugfix", "enhancement", "newpackage", "unspecified")
RPM_QUERY_FORMAT = "%{NAME}\\t%{ARCH}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{INSTALLTIME}\\n"

_NAME_ARCH = re.compile(r"^(?P<name>[^\s/]+)\.(?P<arch>[A-Za-z0-9_]+)$")
_EVR = re.compile(r"^(?:\d+:)?[^\s:-]+-[^\s:-]+$")
_NEVRA = re.compile(r"^(?P<name>[^\s/]+)-(?P<evr>(?:\d+:)?[^\s:-]+-[^\s:-]+)\.(?P<arch>\w+)$")
_ADVISORY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
_SUMMARY = re.compile(
    r"^(?P<kind>install|upgrade|remove|downgrade|installing|upgrading|removing|downgrading)"
    r":?\s+(?P<count>\d+)\s+packages?(?:\s+\(\+(?P<deps>\d+)\s+dependent packages?\))?$"
)


class DnfFailed(RuntimeError):
    """dnf or yum said it could not do what was asked; the message holds its error."""


@dataclass(frozen=True)
class AvailableUpdate:
    """One line of `check-update`: what the repositories offer for an installed package."""

    name: str
    arch: str
    version: str  # [epoch:]version-release, as dnf prints it
    repository: str
    obsoletes: tuple[str, ...] = ()  # "name.arch" of installed packages it replaces


@dataclass(frozen=True)
class Advisory:
    """One line of `updateinfo list`: an advisory (or CVE) naming a package version."""

    advisory_id: str
    kind: str  # security, bugfix, enhancement, newpackage or unspecified
    severity: str  # one of protocol.SEVERITIES
    name: str
    arch: str
    version: str


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    arch: str
    version: str
    install_time: int


@dataclass
class TransactionItem:
    package: str
    arch: str
    from_version: str = ""
    to_version: str = ""
    repository: str = ""
    replaced_by: str = ""  # set on removals caused by an obsoleting package

    def planned(self) -> PlannedChange:
        return PlannedChange(
            package=self.package,
            arch=self.arch,
            from_version=self.from_version,
            to_version=self.to_version,
            repository=self.repository,
            replaced_by=self.replaced_by,
        )


@dataclass
class Transaction:
    """What `dnf upgrade --assumeno` says it would do."""

    upgrades: list[TransactionItem] = field(default_factory=list)
    installs: list[TransactionItem] = field(default_factory=list)
    removals: list[TransactionItem] = field(default_factory=list)
    downgrades: list[TransactionItem] = field(default_factory=list)
    skipped: list[TransactionItem] = field(default_factory=list)

    def dry_run(self, raw: str = "") -> DryRunResult:
        """The transaction as the answer to a dry run."""
        parts = {
            part: tuple(item.planned() for item in getattr(self, part))
            for part in TRANSACTION_PARTS
        }
        return DryRunResult(**parts, raw=raw)


# --- parsing ---------------------------------------------------------------------


def _name_arch(token: str) -> tuple[str, str] | None:
    match = _NAME_ARCH.match(token)
    if match is None or not ARCH.match(match["arch"]):
        return None
    return match["name"], match["arch"]


def _rows(text: str, width: int) -> list[tuple[bool, list[str]]]:
    """Table rows of at least `width` tokens, each with whether it was indented. dnf
    wraps a value wider than its column onto a line of its own and carries on below,
    indented to the next column: such continuation lines are joined back here."""
    rows: list[tuple[bool, list[str]]] = []
    pending: list[str] = []
    pending_indented = False
    for line in text.splitlines():
        tokens = line.split()
        if pending and tokens and line[:1].isspace():
            tokens, indented = pending + tokens, pending_indented
        else:
            indented = line[:1].isspace()
        pending = []
        if 0 < len(tokens) < width:
            pending, pending_indented = tokens, indented
        elif tokens:
            rows.append((indented, tokens))
    return rows


def parse_check_update(text: str) -> list[AvailableUpdate]:
    """The updates listed by `dnf check-update` / `yum check-update`, including the
    "Obsoleting Packages" section (an obsoleting package followed by the installed
    packages it replaces, indented)."""
    body, *rest = re.split(r"(?im)^obsoleting packages[ \t]*$", text, maxsplit=1)
    updates: dict[tuple[str, str], AvailableUpdate] = {}
    for indented, tokens in _rows(body, 3):
        update = _check_update_row(tokens)
        if update is not None and not indented:
            updates[(update.name, update.arch)] = update
    obsoleter: tuple[str, str] | None = None
    for indented, tokens in _rows(rest[0] if rest else "", 3):
        update = _check_update_row(tokens)
        if update is None:
            continue
        if not indented:
            obsoleter = (update.name, update.arch)
            updates.setdefault(obsoleter, update)
        elif obsoleter is not None:
            known = updates[obsoleter]
            replaced = f"{update.name}.{update.arch}"
            if replaced not in known.obsoletes:
                updates[obsoleter] = replace(known, obsoletes=(*known.obsoletes, replaced))
    return list(updates.values())


def _check_update_row(tokens: list[str]) -> AvailableUpdate | None:
    if len(tokens) != 3 or not _EVR.match(tokens[1]):
        return None
    name_arch = _name_arch(tokens[0])
    if name_arch is None:
        return None
    return AvailableUpdate(name_arch[0], name_arch[1], tokens[1], tokens[2])


def parse_nevra(token: str) -> tuple[str, str, str] | None:
    """(name, [epoch:]version-release, arch) of `openssl-1:3.0.7-27.el9.x86_64`."""
    match = _NEVRA.match(token)
    if match is None or not ARCH.match(match["arch"]):
        return None
    return match["name"], match["evr"], match["arch"]


def parse_updateinfo(text: str) -> list[Advisory]:
    """Lines of `updateinfo list` from dnf 4 and yum (`ID Important/Sec. NEVRA`) and of
    `advisory list` from dnf 5 (`ID security Important NEVRA date time`, where a narrow
    table cuts words short: `secu Importan`)."""
    advisories = []
    for line in text.splitlines():
        tokens = line.split()
        found = next(
            ((i, nevra) for i, t in enumerate(tokens[2:], 2) if (nevra := parse_nevra(t))),
            None,
        )
        if found is None or not _ADVISORY_ID.match(tokens[0]):
            continue
        index, (name, version, arch) = found
        kind, severity = _advisory_label(tokens[1:index])
        advisories.append(Advisory(tokens[0], kind, severity, name, arch, version))
    return advisories


def _advisory_label(labels: list[str]) -> tuple[str, str]:
    kind, severity = "unspecified", "unknown"
    for label in (word.lower() for word in labels):
        if label.endswith("/sec."):
            kind, severity = "security", _severity(label[: -len("/sec.")])
            continue
        named = next((k for k in ADVISORY_KINDS if len(label) >= 3 and k.startswith(label)), "")
        if named and kind == "unspecified":
            kind = named
        elif _severity(label) != "unknown":
            severity = _severity(label)
    return kind, severity


def _severity(word: str) -> str:
    word = word.lower()
    if len(word) < 3:
        return "unknown"
    return next((s for s in SEVERITY_RANK if s != "unknown" and s.startswith(word)), "unknown")


def parse_installed(text: str) -> dict[tuple[str, str], InstalledPackage]:
    """`rpm -qa --qf RPM_QUERY_FORMAT` by (name, arch); for packages installed more than
    once (kernels), the most recently installed."""
    installed: dict[tuple[str, str], InstalledPackage] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or not fields[5].isdigit() or not ARCH.match(fields[1]):
            continue
        name, arch, epoch, version, release, when = fields
        evr = (
            f"{version}-{release}"
            if epoch in ("(none)", "0", "")
            else f"{epoch}:{version}-{release}"
        )
        package = InstalledPackage(name, arch, evr, int(when))
        known = installed.get((name, arch))
        if known is None or package.install_time >= known.install_time:
            installed[(name, arch)] = package
    return installed


def parse_transaction(text: str) -> Transaction:
    """The transaction table of dnf 4, dnf 5 and yum. Raises ValueError when the table
    disagrees with the counts in its own "Transaction Summary": a misread table must
    never hide a removal from the admin who approves it."""
    table, *summary = re.split(r"(?im)^transaction summary:?[ \t]*$", text, maxsplit=1)
    transaction = Transaction()
    section: list[TransactionItem] | None = None
    last: TransactionItem | None = None
    pending: list[str] = []
    for line in table.splitlines():
        stripped = line.strip()
        if not line[:1].isspace() or set(stripped) <= {"="}:
            # a section heading, the column titles, a rule or a message
            pending = []
            if stripped.endswith(":") and not stripped.startswith("("):
                section, last = _section(transaction, stripped), None
            continue
        if section is None:
            continue
        tokens = stripped.split()
        if len(line) - len(line.lstrip()) >= CONTINUATION_INDENT:
            if not pending:
                continue  # the size of a row whose repository filled the line
            tokens = pending + tokens
        pending = []
        if tokens[0] == "replacing" and len(tokens) >= 3:
            _replacing(transaction, last, tokens[1:])
        elif len(tokens) < 4:
            pending = tokens  # a name or version wider than its column: the row goes on below
        elif item := _transaction_row(tokens, removal=section is transaction.removals):
            section.append(item)
            last = item
    _check_summary(transaction, summary[0] if summary else "")
    return transaction


def _section(transaction: Transaction, heading: str) -> list[TransactionItem] | None:
    words = heading.lower().rstrip(":")
    if any(w in words for w in ("group", "environment", "module", "reinstall")):
        return None
    kind = _kind_of(words, (("updat", "upgrades"), ("eras", "removals"), ("skip", "skipped")))
    return getattr(transaction, kind) if kind else None


def _kind_of(words: str, extra: tuple[tuple[str, str], ...] = ()) -> str:
    prefixes = (
        ("install", "installs"),
        ("upgrad", "upgrades"),
        ("remov", "removals"),
        ("downgrad", "downgrades"),
        *extra,
    )
    return next((kind for prefix, kind in prefixes if words.startswith(prefix)), "")


def _transaction_row(tokens: list[str], *, removal: bool) -> TransactionItem | None:
    name, arch, version, repository = tokens[:4]
    if not ARCH.match(arch) or not _EVR.match(version):
        return None
    if removal:
        return TransactionItem(name, arch, from_version=version, repository=repository)
    return TransactionItem(name, arch, to_version=version, repository=repository)


def _replacing(transaction: Transaction, last: TransactionItem | None, tokens: list[str]) -> None:
    """`replacing  name.arch evr` (dnf 4, yum: an obsoleted package) or `replacing name
    arch evr repo size` (dnf 5: also the old version of every upgrade)."""
    if (name_arch := _name_arch(tokens[0])) and _EVR.match(tokens[1]):
        (name, arch), version = name_arch, tokens[1]
    elif len(tokens) >= 3 and ARCH.match(tokens[1]) and _EVR.match(tokens[2]):
        name, arch, version = tokens[:3]
    else:
        return
    if last is not None and (last.package, last.arch) == (name, arch) and not last.from_version:
        last.from_version = version  # dnf 5 names the version an upgrade replaces
        return
    replaced_by = last.package if last is not None else "?"
    transaction.removals.append(
        TransactionItem(name, arch, from_version=version, replaced_by=replaced_by)
    )


def _check_summary(transaction: Transaction, summary: str) -> None:
    for line in summary.splitlines():
        match = _SUMMARY.match(line.strip().lower())
        if match is None:
            continue
        kind = _kind_of(match["kind"])
        announced = int(match["count"]) + int(match["deps"] or 0)
        # obsoleted packages appear as "replacing" lines, outside dnf's removal count
        listed = [item for item in getattr(transaction, kind) if not item.replaced_by]
        if announced != len(listed):
            raise ValueError(
                f"dnf transaction: the summary announces {announced} {kind} but the "
                f"table lists {len(listed)}; this output format is not understood"
            )


def parse_install_result(text: str) -> tuple[dict[str, str], list[str]]:
    """({name: new version}, [failed names]) from the summary dnf 4 and yum print after
    a transaction: `Upgraded:`/`Installed:`/`Failed:` (yum: `Updated:`, `Dependency
    Installed:` ...), entries as NEVRAs (dnf) or `name.arch epoch:version` pairs (yum)."""
    installed: dict[str, str] = {}
    failed: dict[str, str] = {}
    bucket: dict[str, str] | None = None
    for line in text.splitlines():
        if not line[:1].isspace():
            heading = line.strip().lower().removeprefix("dependency ")
            bucket = {
                "upgraded:": installed,
                "updated:": installed,
                "installed:": installed,
                "downgraded:": installed,
                "failed:": failed,
            }.get(heading)
            continue
        if bucket is None:
            continue
        tokens = line.split()
        for token, following in zip(tokens, [*tokens[1:], ""]):
            if nevra := parse_nevra(token):
                bucket.setdefault(nevra[0], nevra[1])
            elif (name_arch := _name_arch(token)) and _EVR.match(following):
                bucket.setdefault(name_arch[0], following.removeprefix("0:"))
    return installed, list(failed)


# --- records ---------------------------------------------------------------------


def update_records(
    updates: list[AvailableUpdate],
    advisories: list[Advisory] | None,
    installed: dict[tuple[str, str], InstalledPackage],
    *,
    tool: str = "dnf",
) -> list[dict[str, Any]]:
    """UpdateRecord JSON for each update, with its advisories; `advisories` is None when
    updateinfo could not be read (so "no advisory" is not claimed). A record whose name
    or version the protocol refuses is left out and logged, never sent."""
    by_package: dict[tuple[str, str], list[Advisory]] = {}
    for advisory in advisories or []:
        by_package.setdefault((advisory.name, advisory.arch), []).append(advisory)
    records = []
    for update in updates:
        found = by_package.get((update.name, update.arch), [])
        security = [a for a in found if a.kind == "security"]
        severity = max((a.severity for a in security), key=SEVERITY_RANK.__getitem__, default="")
        current = installed.get((update.name, update.arch))
        details: dict[str, Any] = {"advisory_kinds": sorted({a.kind for a in found})}
        if update.obsoletes:
            details["obsoletes"] = list(update.obsoletes)
        if advisories is None:
            details["advisories_unavailable"] = True
        if tool != "dnf":
            details["tool"] = tool
        record = UpdateRecord(
            source="dnf",
            package=update.name,
            available_version=update.version,
            current_version=current.version if current else "",
            arch=update.arch,
            origin=update.repository,
            severity=severity or "unknown",
            security=bool(security),
            advisories=tuple(sorted({a.advisory_id for a in found}))[:MAX_ADVISORIES],
            reboot_required=bool(REBOOT_PACKAGE.match(update.name)),
            details=details,
        )
        try:
            records.append(UpdateRecord.from_json(record.to_json()).to_json())
        except ProtocolError as exc:
            log_event(
                logger,
                logging.WARNING,
                "agent.update_refused",
                f"dnf listed an update the protocol refuses: {exc}",
                source="dnf",
                error=str(exc),
            )
    return records


def check_names(packages: Sequence[str]) -> list[str]:
    """The approved names, each checked before any tool runs. An empty list is refused:
    `dnf upgrade` without names would upgrade everything."""
    if isinstance(packages, str) or not packages:
        raise ProtocolError("packages: a non-empty list of package names")
    return list(dict.fromkeys(check_package_name("dnf", name) for name in packages))


# --- running ---------------------------------------------------------------------


def find_tool() -> str | None:
    """`dnf` where it exists (RHEL 8+, Fedora), else `yum` (RHEL/CentOS 7)."""
    return next((tool for tool in ("dnf", "yum") if shutil.which(tool)), None)


def _environment(tool: str) -> dict[str, str]:
    # The parsers read English headings; C.UTF-8 keeps non-ASCII text intact for the
    # Python 3 dnf, while yum (Python 2) is safest in plain C.
    locale = "C.UTF-8" if tool == "dnf" else "C"
    return {"LC_ALL": locale, "LANG": locale}


def _tail(completed: Completed, chars: int = 2000) -> str:
    return (completed.stderr.strip() or completed.stdout.strip())[-chars:]


def query_installed(
    timeout_s: float, env: dict[str, str]
) -> dict[tuple[str, str], InstalledPackage]:
    """What rpm says is installed; empty (and logged) when rpm cannot answer, since
    current versions are worth having but not worth failing a scan for."""
    if shutil.which("rpm") is None:
        return {}
    queried = run(["rpm", "-qa", "--qf", RPM_QUERY_FORMAT], timeout_s=timeout_s, env=env)
    if queried.returncode != 0:
        log_event(
            logger,
            logging.WARNING,
            "agent.rpm_query_failed",
            f"rpm -qa failed, current versions left empty: {_tail(queried, 500)}",
        )
        return {}
    return parse_installed(queried.stdout)


def _versions_by_name(installed: dict[tuple[str, str], InstalledPackage]) -> dict[str, str]:
    newest: dict[str, InstalledPackage] = {}
    for package in installed.values():
        known = newest.get(package.name)
        if known is None or package.install_time >= known.install_time:
            newest[package.name] = package
    return {name: package.version for name, package in newest.items()}


class DnfScanner:
    name = "dnf"

    def __init__(self, timeout_s: float = SCAN_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def available(self) -> bool:
        return find_tool() is not None

    def scan(self) -> list[dict[str, Any]]:
        tool = _tool()
        env = _environment(tool)
        # Works unprivileged too, but as root (through sudo's wrapper where installed)
        # it refreshes the metadata that installs use.
        command = [tool, "check-update"]
        if can_get_root("dnf-check-update"):
            command = as_root(command, "dnf-check-update")
        checked = run(command, timeout_s=self.timeout_s, env=env)
        if checked.returncode not in (0, 100):
            reason = sudo_refusal(checked.stderr) or _tail(checked)
            raise DnfFailed(f"{tool} check-update exit {checked.returncode}: {reason}")
        updates = parse_check_update(checked.stdout)
        if not updates:
            return []
        advisories = self._advisories(tool, env)
        installed = query_installed(self.timeout_s, env)
        return update_records(updates, advisories, installed, tool=tool)

    def _advisories(self, tool: str, env: dict[str, str]) -> list[Advisory] | None:
        """Advisory ids, then CVE ids (dnf only: yum 3 has no `--with-cve`). A failure
        here costs severity data, not the scan: the records then say so."""
        if tool == "dnf":
            commands = [
                [tool, "updateinfo", "list", "--updates"],
                [tool, "updateinfo", "list", "--updates", "--with-cve"],
            ]
        else:
            commands = [[tool, "updateinfo", "list", "updates"]]
        advisories: list[Advisory] = []
        for index, command in enumerate(commands):
            listed = run(command, timeout_s=self.timeout_s, env=env)
            if listed.returncode != 0:
                log_event(
                    logger,
                    logging.WARNING,
                    "agent.dnf_updateinfo_failed",
                    f"{' '.join(command[1:])} failed: {_tail(listed, 500)}",
                    exit_code=listed.returncode,
                )
                if index == 0:
                    return None
                continue
            advisories += parse_updateinfo(listed.stdout)
        return advisories


class DnfInstaller:
    source = "dnf"

    def __init__(self, timeout_s: float = INSTALL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def dry_run(self, packages: Sequence[str]) -> DryRunResult:
        """What upgrading exactly `packages` would do, from `upgrade --assumeno`."""
        names = check_names(packages)
        tool = _tool()
        env = _environment(tool)
        planned = run(
            [tool, "upgrade", "--assumeno", "--", *names], timeout_s=self.timeout_s, env=env
        )
        output = planned.stdout + planned.stderr
        # --assumeno answers "no" to the prompt: dnf then exits 1 ("Operation aborted."),
        # yum exits 1 ("Exiting on user command"); "Nothing to do." exits 0.
        declined = re.search(r"(?im)^(operation aborted|exiting on user command)", output)
        if planned.returncode != 0 and not (planned.returncode == 1 and declined):
            raise DnfFailed(
                f"{tool} upgrade --assumeno exit {planned.returncode}: {_tail(planned)}"
            )
        transaction = parse_transaction(planned.stdout)
        if any(not item.from_version for item in transaction.upgrades + transaction.downgrades):
            installed = query_installed(self.timeout_s, env)  # dnf 4 and yum do not say
            for item in transaction.upgrades + transaction.downgrades:
                known = installed.get((item.package, item.arch))
                item.from_version = item.from_version or (known.version if known else "")
        return transaction.dry_run(raw=output[:RAW_OUTPUT_CHARS])

    def install(self, packages: Sequence[str], on_output: Callable[[str], None]) -> InstallResult:
        """Upgrade exactly `packages` (`upgrade -y`), streaming each output line.
        `installed` lists {"package", "from", "to"} for every package dnf changed, the
        approved ones and the dependencies; `failed` the approved names it did not."""
        names = check_names(packages)
        tool = _tool()
        env = _environment(tool)
        before = _versions_by_name(query_installed(self.timeout_s, env))
        done = run(
            # packaging/wrappers/dnf-upgrade builds this same command line.
            as_root([tool, "upgrade", "-y", "--", *names], "dnf-upgrade", names),
            timeout_s=self.timeout_s,
            env=env,
            on_line=on_output,
        )
        after = _versions_by_name(query_installed(self.timeout_s, env))
        reported, failed = parse_install_result(done.stdout)
        if done.returncode == 0 and not reported:
            reported = _table_versions(done.stdout)  # dnf 5 prints no summary afterwards
        changed = [n for n in names if after.get(n) and after.get(n) != before.get(n)]
        changed = list(dict.fromkeys([*reported, *changed]))
        if done.returncode != 0:
            failed = list(dict.fromkeys(failed + [n for n in names if n not in changed]))
        return InstallResult(
            installed=tuple(
                install_results.InstalledPackage(
                    n, before.get(n, ""), reported.get(n) or after.get(n, "")
                )
                for n in changed
            ),
            failed=tuple(failed),
            unchanged=tuple(n for n in names if n not in changed and n not in failed),
            exit_code=done.returncode,
            error=sudo_refusal(done.stderr) if done.returncode else None,
            output_tail=(done.stdout + done.stderr)[-OUTPUT_TAIL_CHARS:],
            reboot_required=any(REBOOT_PACKAGE.match(n) for n in changed),
        )


def _table_versions(output: str) -> dict[str, str]:
    try:
        table = parse_transaction(output)
    except ValueError:
        return {}
    return {i.package: i.to_version for i in table.upgrades + table.installs + table.downgrades}


def _tool() -> str:
    tool = find_tool()
    if tool is None:
        raise DnfFailed("neither dnf nor yum is on PATH")
    return tool


register("dnf", scanner=lambda config: DnfScanner(), installer=DnfInstaller)
