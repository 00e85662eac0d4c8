"""The DNF scanner and installer read dnf 4, dnf 5 and yum outputs exactly, and never
let an unchecked package name reach the tool.

End to end tests put a fake `dnf` (or `yum`) and `rpm` first on PATH: each prints a
recorded output from tests/fixtures/dnf/, exits with the code the real tool gives, and
logs its arguments, so the tests see exactly what would have run."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.scanners.dnf import (
    RPM_QUERY_FORMAT,
    Advisory,
    AvailableUpdate,
    DnfFailed,
    DnfInstaller,
    DnfScanner,
    parse_check_update,
    parse_install_result,
    parse_installed,
    parse_transaction,
    parse_updateinfo,
)
from kernel.protocol import ProtocolError, UpdateRecord

FIXTURES = Path(__file__).parents[3] / "fixtures" / "dnf"
no_database = settings(database=None, deadline=None)

FAKE_TOOL = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
command = " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]])
with open(here / "calls.jsonl", "a") as calls:
    calls.write(json.dumps([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]]) + "\\n")
routes = json.loads((here / "routes.json").read_text())
for prefix in sorted(routes, key=len, reverse=True):
    if command.startswith(prefix):
        stdout, stderr, code = routes[prefix]
        if stdout:
            sys.stdout.buffer.write(pathlib.Path(stdout).read_bytes())
        if stderr:
            sys.stderr.buffer.write(pathlib.Path(stderr).read_bytes())
        sys.exit(code)
sys.stderr.write("fake tool: no route for " + command + "\\n")
sys.exit(3)
"""


class FakeTools:
    """Fake command-line tools in a directory that is all of PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.routes: dict[str, tuple[str, str, int]] = {}

    def install(self, *names: str) -> FakeTools:
        for name in names:
            tool = self.bin_dir / name
            tool.write_text(FAKE_TOOL.format(python=sys.executable))
            tool.chmod(0o755)
        return self

    def route(self, command: str, fixture: str = "", exit_code: int = 0, stderr: str = "") -> None:
        stdout = str(FIXTURES / fixture) if fixture else ""
        stderr_file = ""
        if stderr:
            stderr_path = self.bin_dir / f"stderr-{len(self.routes)}.txt"
            stderr_path.write_text(stderr)
            stderr_file = str(stderr_path)
        self.routes[command] = (stdout, stderr_file, exit_code)
        (self.bin_dir / "routes.json").write_text(json.dumps(self.routes))

    def calls(self) -> list[list[str]]:
        log = self.bin_dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return FakeTools(bin_dir)


@pytest.fixture
def rhel9(tools: FakeTools) -> FakeTools:
    """A RHEL 9 host with updates pending, as dnf and rpm describe it."""
    tools.install("dnf", "rpm")
    tools.route("dnf check-update", "check-update-rhel9.txt", 100)
    tools.route("dnf updateinfo list --updates", "updateinfo-rhel9.txt")
    tools.route("dnf updateinfo list --updates --with-cve", "updateinfo-cve-rhel9.txt")
    tools.route("rpm -qa", "rpm-qa-rhel9.txt")
    return tools


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- parsing recorded outputs ----------------------------------------------------

BASEOS = "rhel-9-for-x86_64-baseos-rpms"


def test_check_update_lists_every_update_with_wrapped_names_and_versions_joined() -> None:
    updates = parse_check_update(fixture_text("check-update-rhel9.txt"))
    assert [(u.name, u.arch, u.version, u.repository) for u in updates] == [
        ("NetworkManager", "x86_64", "1:1.46.0-8.el9_4", BASEOS),
        ("NetworkManager-libnm", "x86_64", "1:1.46.0-8.el9_4", BASEOS),
        ("glibc", "i686", "2.34-100.el9_4.2", BASEOS),
        ("glibc", "x86_64", "2.34-100.el9_4.2", BASEOS),
        ("glibc-common", "x86_64", "2.34-100.el9_4.2", BASEOS),
        ("golang-github-prometheus-node-exporter", "x86_64", "1.7.0-1.el9", "epel"),
        ("grub2-tools-minimal", "x86_64", "1:2.06-77.el9", BASEOS),
        ("kernel", "x86_64", "5.14.0-427.16.1.el9_4", BASEOS),
        ("kernel-core", "x86_64", "5.14.0-427.16.1.el9_4", BASEOS),
        (
            "nodejs",
            "x86_64",
            "1:18.20.2-2.module+el9.4.0+21731+46b5c4cf",
            "rhel-9-for-x86_64-appstream-rpms",
        ),
        ("openssl", "x86_64", "1:3.0.7-27.el9", BASEOS),
        ("openssl-libs", "x86_64", "1:3.0.7-27.el9", BASEOS),
        ("tzdata", "noarch", "2024a-1.el9", BASEOS),
        ("vim-minimal", "x86_64", "2:8.2.2637-20.el9_1", BASEOS),
        ("grub2-tools-extra", "x86_64", "1:2.06-77.el9", BASEOS),
    ]


def test_obsoleting_packages_carry_the_installed_packages_they_replace() -> None:
    updates = {u.name: u for u in parse_check_update(fixture_text("check-update-rhel9.txt"))}
    assert updates["grub2-tools-extra"].obsoletes == ("grub2-tools-efi.x86_64",)
    assert updates["grub2-tools-minimal"].obsoletes == ("grub2-tools-minimal.x86_64",)
    assert updates["kernel"].obsoletes == ()


def test_yum_check_update_skips_plugin_and_mirror_lines() -> None:
    updates = parse_check_update(fixture_text("check-update-centos7.txt"))
    assert [(u.name, u.version) for u in updates] == [
        ("bind-export-libs", "32:9.11.4-26.P2.el7_9.16"),
        ("kernel", "3.10.0-1160.119.1.el7"),
        ("openssl", "1:1.0.2k-26.el7_9"),
        ("openssl-libs", "1:1.0.2k-26.el7_9"),
        ("python-perf", "3.10.0-1160.119.1.el7"),
    ]


def test_check_update_with_nothing_pending_is_empty() -> None:
    assert parse_check_update(fixture_text("check-update-none.txt")) == []


def test_updateinfo_lines_give_advisory_kind_severity_and_package() -> None:
    advisories = parse_updateinfo(fixture_text("updateinfo-rhel9.txt"))
    assert len(advisories) == 16
    assert advisories[0] == Advisory(
        "RHBA-2024:2290", "bugfix", "unknown", "NetworkManager", "x86_64", "1:1.46.0-8.el9_4"
    )
    assert (
        Advisory(
            "RHSA-2024:2910",
            "security",
            "critical",
            "nodejs",
            "x86_64",
            "1:18.20.2-2.module+el9.4.0+21731+46b5c4cf",
        )
        in advisories
    )
    assert {(a.advisory_id, a.kind, a.severity) for a in advisories if a.name == "kernel"} == {
        ("RHSA-2024:2394", "security", "moderate"),
        ("RHSA-2024:2758", "security", "important"),
        ("RHBA-2024:2757", "bugfix", "unknown"),
    }
    assert advisories[-1].kind == "enhancement"


def test_dnf5_advisory_list_with_words_cut_short_is_understood() -> None:
    advisories = parse_updateinfo(fixture_text("advisory-list-fedora40.txt"))
    assert [(a.advisory_id, a.kind, a.severity, a.name, a.version) for a in advisories] == [
        ("FEDORA-2024-1e8a70c30e", "enhancement", "unknown", "zstd", "1.5.6-1.fc40"),
        ("FEDORA-2024-27b58399dc", "bugfix", "moderate", "libgcc", "14.1.1-1.fc40"),
        ("FEDORA-2024-635a54eb7e", "security", "important", "glib2", "2.80.2-1.fc40"),
        ("FEDORA-2024-9f1b7c2e41", "security", "critical", "firefox", "126.0-7.fc40"),
        ("FEDORA-2024-fbfda3f679", "unspecified", "unknown", "libcap", "2.69-8.fc40"),
    ]


def test_centos_without_updateinfo_has_no_advisories() -> None:
    assert parse_updateinfo(fixture_text("updateinfo-centos7.txt")) == []


def test_installed_versions_keep_the_newest_kernel_and_skip_gpg_keys() -> None:
    installed = parse_installed(fixture_text("rpm-qa-rhel9.txt"))
    assert installed[("kernel", "x86_64")].version == "5.14.0-362.24.1.el9_3"
    assert installed[("kernel-core", "x86_64")].version == "5.14.0-362.24.1.el9_3"
    assert installed[("openssl", "x86_64")].version == "1:3.0.7-25.el9_3"
    assert installed[("bash", "x86_64")].version == "5.1.8-9.el9"
    assert not any(name == "gpg-pubkey" for name, _ in installed)


def test_transaction_lists_installs_upgrades_and_every_removal() -> None:
    transaction = parse_transaction(fixture_text("upgrade-assumeno-rhel9.txt"))
    assert [(i.package, i.to_version) for i in transaction.upgrades] == [
        ("nodejs", "1:18.20.2-2.module+el9.4.0+21731+46b5c4cf"),
        ("openssl", "1:3.0.7-27.el9"),
        ("openssl-libs", "1:3.0.7-27.el9"),
    ]
    assert [i.package for i in transaction.installs] == [
        "kernel",
        "kernel-core",
        "grub2-tools-extra",
        "kernel-modules-core",
        "nodejs-docs",
    ]
    assert [(i.package, i.from_version, i.replaced_by) for i in transaction.removals] == [
        ("grub2-tools-efi", "1:2.06-70.el9_3.2", "grub2-tools-extra"),
        ("kernel", "5.14.0-362.8.1.el9_3", ""),
        ("kernel-core", "5.14.0-362.8.1.el9_3", ""),
        ("kernel-modules-core", "5.14.0-362.8.1.el9_3", ""),
        ("python3-perf-with-a-name-too-long-for-its-column", "5.14.0-362.8.1.el9_3", ""),
    ]


def test_dnf5_transaction_takes_old_versions_from_its_replacing_lines() -> None:
    transaction = parse_transaction(fixture_text("upgrade-assumeno-fedora41.txt"))
    assert transaction.dry_run().to_json() == {
        "upgrades": [
            {
                "package": "openssl",
                "arch": "x86_64",
                "from": "1:3.2.2-8.fc41",
                "to": "1:3.2.2-9.fc41",
                "repository": "updates",
            },
            {
                "package": "openssl-libs",
                "arch": "x86_64",
                "from": "1:3.2.2-8.fc41",
                "to": "1:3.2.2-9.fc41",
                "repository": "updates",
            },
        ],
        "installs": [
            {
                "package": "openssl-fips-provider-so",
                "arch": "x86_64",
                "to": "3.0.7-6.fc41",
                "repository": "updates",
            }
        ],
        "removals": [
            {
                "package": "openssl-pkcs11",
                "arch": "x86_64",
                "from": "0.4.12-9.fc41",
                "repository": "fedora",
            }
        ],
        "downgrades": [],
        "skipped": [],
        "missing": [],
        "raw": "",
    }


def test_yum_transaction_counts_dependent_updates_as_upgrades() -> None:
    transaction = parse_transaction(fixture_text("upgrade-assumeno-centos7.txt"))
    assert [i.package for i in transaction.upgrades] == ["openssl", "openssl-libs"]
    assert transaction.installs == transaction.removals == []


def test_a_table_that_disagrees_with_its_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="announces 3 removals but the table lists 2"):
        parse_transaction(fixture_text("upgrade-assumeno-miscount.txt"))


def test_install_summaries_of_dnf_and_yum_name_what_changed() -> None:
    assert parse_install_result(fixture_text("upgrade-y-rhel9.txt")) == (
        {"openssl": "1:3.0.7-27.el9", "openssl-libs": "1:3.0.7-27.el9"},
        [],
    )
    assert parse_install_result(fixture_text("upgrade-y-kernel-centos7.txt")) == (
        {"kernel": "3.10.0-1160.119.1.el7"},
        [],
    )


# --- scanning through a fake dnf -------------------------------------------------


def test_scan_reports_each_update_with_versions_severity_and_advisories(rhel9: FakeTools) -> None:
    records = DnfScanner().scan()
    for record in records:
        assert UpdateRecord.from_json(record).to_json() == record
    summary = [
        (
            r["package"],
            r["arch"],
            r["current_version"],
            r["available_version"],
            r["severity"],
            r["security"],
            r["advisories"],
            r["reboot_required"],
        )
        for r in records
    ]
    glibc_advisories = ["CVE-2024-2961", "CVE-2024-33599", "RHSA-2024:3339"]
    assert summary == [
        (
            "NetworkManager",
            "x86_64",
            "1:1.44.0-5.el9_3",
            "1:1.46.0-8.el9_4",
            "unknown",
            False,
            ["RHBA-2024:2290"],
            False,
        ),
        (
            "NetworkManager-libnm",
            "x86_64",
            "1:1.44.0-5.el9_3",
            "1:1.46.0-8.el9_4",
            "unknown",
            False,
            ["RHBA-2024:2290"],
            False,
        ),
        (
            "glibc",
            "i686",
            "2.34-83.el9_3.12",
            "2.34-100.el9_4.2",
            "important",
            True,
            glibc_advisories,
            True,
        ),
        (
            "glibc",
            "x86_64",
            "2.34-83.el9_3.12",
            "2.34-100.el9_4.2",
            "important",
            True,
            glibc_advisories,
            True,
        ),
        (
            "glibc-common",
            "x86_64",
            "2.34-83.el9_3.12",
            "2.34-100.el9_4.2",
            "important",
            True,
            glibc_advisories,
            False,
        ),
        (
            "golang-github-prometheus-node-exporter",
            "x86_64",
            "1.6.1-1.el9",
            "1.7.0-1.el9",
            "low",
            True,
            ["CVE-2023-45288", "FEDORA-EPEL-2024-6b7e1a7b2c"],
            False,
        ),
        (
            "grub2-tools-minimal",
            "x86_64",
            "1:2.06-70.el9_3.2",
            "1:2.06-77.el9",
            "unknown",
            False,
            [],
            False,
        ),
        (
            "kernel",
            "x86_64",
            "5.14.0-362.24.1.el9_3",
            "5.14.0-427.16.1.el9_4",
            "important",
            True,
            [
                "CVE-2023-6040",
                "CVE-2024-26643",
                "RHBA-2024:2757",
                "RHSA-2024:2394",
                "RHSA-2024:2758",
            ],
            True,
        ),
        (
            "kernel-core",
            "x86_64",
            "5.14.0-362.24.1.el9_3",
            "5.14.0-427.16.1.el9_4",
            "important",
            True,
            [
                "CVE-2023-6040",
                "CVE-2024-26643",
                "RHBA-2024:2757",
                "RHSA-2024:2394",
                "RHSA-2024:2758",
            ],
            True,
        ),
        (
            "nodejs",
            "x86_64",
            "1:18.19.0-1.module+el9.3.0+21000+d0e5ab9c",
            "1:18.20.2-2.module+el9.4.0+21731+46b5c4cf",
            "critical",
            True,
            ["CVE-2024-27982", "CVE-2024-27983", "RHSA-2024:2910"],
            False,
        ),
        (
            "openssl",
            "x86_64",
            "1:3.0.7-25.el9_3",
            "1:3.0.7-27.el9",
            "moderate",
            True,
            ["CVE-2023-3446", "CVE-2023-3817", "RHSA-2024:2447"],
            False,
        ),
        (
            "openssl-libs",
            "x86_64",
            "1:3.0.7-25.el9_3",
            "1:3.0.7-27.el9",
            "moderate",
            True,
            ["CVE-2023-3446", "CVE-2023-3817", "RHSA-2024:2447"],
            False,
        ),
        (
            "tzdata",
            "noarch",
            "2023c-1.el9",
            "2024a-1.el9",
            "unknown",
            False,
            ["RHEA-2024:2289"],
            False,
        ),
        (
            "vim-minimal",
            "x86_64",
            "2:8.2.2637-16.el9_0.3",
            "2:8.2.2637-20.el9_1",
            "unknown",
            False,
            [],
            False,
        ),
        ("grub2-tools-extra", "x86_64", "", "1:2.06-77.el9", "unknown", False, [], False),
    ]
    by_name = {r["package"]: r for r in records}
    assert by_name["grub2-tools-extra"]["details"]["obsoletes"] == ["grub2-tools-efi.x86_64"]
    assert by_name["kernel"]["details"]["advisory_kinds"] == ["bugfix", "security"]
    assert by_name["golang-github-prometheus-node-exporter"]["origin"] == "epel"
    assert all(r["source"] == "dnf" for r in records)
    assert rhel9.calls() == [
        ["dnf", "check-update"],
        ["dnf", "updateinfo", "list", "--updates"],
        ["dnf", "updateinfo", "list", "--updates", "--with-cve"],
        ["rpm", "-qa", "--qf", RPM_QUERY_FORMAT],
    ]


def test_scan_with_nothing_pending_runs_check_update_only(tools: FakeTools) -> None:
    tools.install("dnf", "rpm")
    tools.route("dnf check-update", "check-update-none.txt", 0)
    assert DnfScanner().scan() == []
    assert tools.calls() == [["dnf", "check-update"]]


def test_check_update_failing_raises_with_the_error_dnf_gave(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route(
        "dnf check-update",
        exit_code=1,
        stderr="Error: Failed to download metadata for repo 'baseos': Cannot download repomd.xml\n",
    )
    with pytest.raises(DnfFailed, match="exit 1: Error: Failed to download metadata for repo"):
        DnfScanner().scan()


def test_yum_is_used_when_dnf_is_missing_with_the_same_parsers(tools: FakeTools) -> None:
    tools.install("yum", "rpm")
    tools.route("yum check-update", "check-update-centos7.txt", 100)
    tools.route("yum updateinfo list updates", "updateinfo-centos7.txt")
    tools.route("rpm -qa", "rpm-qa-rhel9.txt")
    scanner = DnfScanner()
    assert scanner.available()
    records = scanner.scan()
    assert [r["package"] for r in records] == [
        "bind-export-libs",
        "kernel",
        "openssl",
        "openssl-libs",
        "python-perf",
    ]
    assert {r["source"] for r in records} == {"dnf"}
    assert all(r["details"]["tool"] == "yum" for r in records)
    assert [call[:3] for call in tools.calls()] == [
        ["yum", "check-update"],
        ["yum", "updateinfo", "list"],
        ["rpm", "-qa", "--qf"],
    ]


def test_scanner_is_unavailable_without_dnf_or_yum(tools: FakeTools) -> None:
    tools.install("rpm")
    assert not DnfScanner().available()


def test_unreadable_updateinfo_keeps_the_updates_and_says_severity_is_unknown(
    rhel9: FakeTools,
) -> None:
    rhel9.route("dnf updateinfo list --updates", exit_code=1, stderr="Error: no updateinfo\n")
    records = DnfScanner().scan()
    assert len(records) == 15
    assert all(r["severity"] == "unknown" and not r["security"] for r in records)
    assert all(r["details"]["advisories_unavailable"] for r in records)


def test_an_update_the_protocol_refuses_is_left_out_and_logged(
    tools: FakeTools, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = tmp_path / "check-update.txt"
    listing.write_text(
        "evil;reboot.x86_64      1.0-1.el9     baseos\n"
        "curl.x86_64             7.76.1-29.el9_4     baseos\n"
    )
    tools.install("dnf")
    tools.route("dnf check-update", str(listing), 100)
    tools.route("dnf updateinfo", "updateinfo-centos7.txt")
    with caplog.at_level(logging.WARNING, logger="redflag.agent.scanners.dnf"):
        records = DnfScanner().scan()
    assert [r["package"] for r in records] == ["curl"]
    assert "evil;reboot" in caplog.text


# --- dry runs and installs -------------------------------------------------------


def test_dry_run_shows_upgrades_installs_and_the_removals_before_approval(
    rhel9: FakeTools,
) -> None:
    rhel9.route("dnf upgrade --assumeno", "upgrade-assumeno-rhel9.txt", 1)
    plan = (
        DnfInstaller()
        .dry_run(["kernel", "kernel-core", "openssl", "openssl-libs", "nodejs"])
        .to_json()
    )
    assert [(u["package"], u["from"], u["to"]) for u in plan["upgrades"]] == [
        (
            "nodejs",
            "1:18.19.0-1.module+el9.3.0+21000+d0e5ab9c",
            "1:18.20.2-2.module+el9.4.0+21731+46b5c4cf",
        ),
        ("openssl", "1:3.0.7-25.el9_3", "1:3.0.7-27.el9"),
        ("openssl-libs", "1:3.0.7-25.el9_3", "1:3.0.7-27.el9"),
    ]
    assert [i["package"] for i in plan["installs"]] == [
        "kernel",
        "kernel-core",
        "grub2-tools-extra",
        "kernel-modules-core",
        "nodejs-docs",
    ]
    assert [(r["package"], r["from"]) for r in plan["removals"]] == [
        ("grub2-tools-efi", "1:2.06-70.el9_3.2"),
        ("kernel", "5.14.0-362.8.1.el9_3"),
        ("kernel-core", "5.14.0-362.8.1.el9_3"),
        ("kernel-modules-core", "5.14.0-362.8.1.el9_3"),
        ("python3-perf-with-a-name-too-long-for-its-column", "5.14.0-362.8.1.el9_3"),
    ]
    assert plan["raw"].endswith("Operation aborted.\n")
    assert rhel9.calls()[0] == [
        "dnf",
        "upgrade",
        "--assumeno",
        "--",
        "kernel",
        "kernel-core",
        "openssl",
        "openssl-libs",
        "nodejs",
    ]


def test_dry_run_with_yum_accepts_its_exiting_on_user_command(tools: FakeTools) -> None:
    tools.install("yum", "rpm")
    tools.route("yum upgrade --assumeno", "upgrade-assumeno-centos7.txt", 1)
    tools.route("rpm -qa", "rpm-qa-rhel9.txt")
    plan = DnfInstaller().dry_run(["openssl"]).to_json()
    assert [u["package"] for u in plan["upgrades"]] == ["openssl", "openssl-libs"]
    assert plan["removals"] == []


def test_dry_run_of_an_up_to_date_package_is_empty(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route("dnf upgrade --assumeno", "upgrade-assumeno-nothing.txt", 0)
    plan = DnfInstaller().dry_run(["bash"]).to_json()
    assert plan["upgrades"] == plan["installs"] == plan["removals"] == []


def test_dry_run_raises_when_dnf_fails_rather_than_declines(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route(
        "dnf upgrade --assumeno",
        "upgrade-y-nomatch.txt",
        1,
        stderr="Error: No packages marked for upgrade.\n",
    )
    with pytest.raises(DnfFailed, match="No packages marked for upgrade"):
        DnfInstaller().dry_run(["cowsay"])


def test_dry_run_refuses_output_it_cannot_fully_read(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route("dnf upgrade --assumeno", "upgrade-assumeno-miscount.txt", 1)
    with pytest.raises(ValueError, match="not understood"):
        DnfInstaller().dry_run(["openssl"])


def test_install_streams_every_line_and_reports_what_was_upgraded(rhel9: FakeTools) -> None:
    rhel9.route("dnf upgrade -y", "upgrade-y-rhel9.txt", 0)
    streamed: list[str] = []
    result = DnfInstaller().install(["openssl", "openssl-libs"], streamed.append).to_json()
    assert result["installed"] == [
        {"package": "openssl", "from": "1:3.0.7-25.el9_3", "to": "1:3.0.7-27.el9"},
        {"package": "openssl-libs", "from": "1:3.0.7-25.el9_3", "to": "1:3.0.7-27.el9"},
    ]
    assert result["failed"] == result["unchanged"] == []
    assert result["reboot_required"] is False
    assert result["output_tail"].endswith("Complete!\n")
    assert streamed == fixture_text("upgrade-y-rhel9.txt").splitlines()
    assert rhel9.calls() == [
        ["rpm", "-qa", "--qf", RPM_QUERY_FORMAT],
        ["dnf", "upgrade", "-y", "--", "openssl", "openssl-libs"],
        ["rpm", "-qa", "--qf", RPM_QUERY_FORMAT],
    ]


def test_a_kernel_installed_by_yum_needs_a_reboot(tools: FakeTools) -> None:
    tools.install("yum")
    tools.route("yum upgrade -y", "upgrade-y-kernel-centos7.txt", 0)
    result = DnfInstaller().install(["kernel"], lambda line: None).to_json()
    assert result["installed"] == [{"package": "kernel", "from": "", "to": "3.10.0-1160.119.1.el7"}]
    assert result["reboot_required"] is True


def test_installing_a_package_that_is_not_there_fails_it(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route(
        "dnf upgrade -y",
        "upgrade-y-nomatch.txt",
        1,
        stderr=fixture_text("upgrade-y-nomatch.stderr"),
    )
    result = DnfInstaller().install(["cowsay"], lambda line: None).to_json()
    assert result["installed"] == []
    assert result["failed"] == ["cowsay"]
    assert result["exit_code"] == 1
    assert "No packages marked for upgrade" in result["output_tail"]


MALICIOUS = ["foo; rm -rf /", "../x", "-y", "--setopt=reposdir=/tmp", "a b", "x/y", "", "$(id)"]


@pytest.mark.parametrize("name", MALICIOUS)
def test_malicious_names_are_refused_before_any_tool_runs(tools: FakeTools, name: str) -> None:
    tools.install("dnf", "rpm")
    installer = DnfInstaller()
    with pytest.raises(ProtocolError, match="not a valid dnf name"):
        installer.dry_run(["openssl", name])
    with pytest.raises(ProtocolError, match="not a valid dnf name"):
        installer.install(["openssl", name], lambda line: None)
    assert tools.calls() == []


@pytest.mark.parametrize("packages", [[], "openssl"])
def test_an_empty_package_set_or_a_bare_string_is_refused(
    tools: FakeTools, packages: object
) -> None:
    tools.install("dnf")
    with pytest.raises(ProtocolError, match="non-empty list"):
        DnfInstaller().install(packages, lambda line: None)  # type: ignore[arg-type]
    assert tools.calls() == []


# --- robustness ------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "kernel.x86_64",
        "kernel",
        "x86_64",
        "noarch",
        "1:2.3-4.el9",
        "5.14.0-427.el9",
        "baseos",
        "@System",
        "replacing",
        "Upgrading:",
        "Removing:",
        "Installing:",
        "Obsoleting Packages",
        "Transaction Summary",
        "Remove  2 Packages",
        "Install 1 Package",
        "RHSA-2024:1",
        "Important/Sec.",
        "secu",
        "Importan",
        "openssl-1:3.0.7-27.el9.x86_64",
        "=====",
        "(",
        ":",
        "\t",
        "…",
    ]
)
LINES = st.lists(
    st.tuples(st.sampled_from(["", " ", "    ", "          "]), st.lists(TOKENS, max_size=7)),
    max_size=30,
).map(lambda lines: "\n".join(indent + " ".join(tokens) for indent, tokens in lines))
PARSERS = [parse_check_update, parse_updateinfo, parse_installed, parse_install_result]


@no_database
@given(text=st.one_of(st.text(), LINES))
def test_random_text_never_crashes_the_parsers(text: str) -> None:
    for parse in PARSERS:
        parse(text)
    try:
        parse_transaction(text)
    except ValueError as exc:
        assert "not understood" in str(exc)


@no_database
@given(text=LINES)
def test_whatever_check_update_yields_is_well_formed(text: str) -> None:
    for update in parse_check_update(text):
        assert isinstance(update, AvailableUpdate)
        assert update.name and update.arch and "-" in update.version and update.repository


def test_installing_an_up_to_date_package_leaves_it_unchanged(tools: FakeTools) -> None:
    tools.install("dnf")
    tools.route("dnf upgrade -y", "upgrade-assumeno-nothing.txt", 0)
    result = DnfInstaller().install(["bash"], lambda line: None).to_json()
    assert (result["installed"], result["failed"], result["unchanged"]) == ([], [], ["bash"])


def test_the_installer_is_filed_under_the_dnf_source_on_yum_hosts_too() -> None:
    assert DnfInstaller.source == "dnf"
    assert DnfScanner.name == "dnf"
