"""The reboot state: Debian's reboot-required file, RHEL's needs-restarting, a Windows hook.

Debian hosts are a fake root in tmp_path; RHEL hosts get a fake `needs-restarting` that
is all of PATH and answers like the real one (exit 1 and the list, or exit 0).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from agent.scanners import reboot
from agent.scanners.reboot import MAX_PACKAGES, reboot_state

BOOTED = 1_795_000_000.0
NOW = BOOTED + 3 * 86400 + 120

NEEDS_RESTARTING = """#!{python}
import pathlib, sys, time
here = pathlib.Path(__file__).resolve().parent
(here / "calls.txt").write_text(" ".join(sys.argv[1:]))
time.sleep({sleep})
sys.stdout.write({stdout!r})
sys.stderr.write({stderr!r})
sys.exit({code})
"""
REBOOT_NEEDED = """Core libraries or services have been updated since boot-up:
  * kernel
  * glibc
  * systemd

Reboot is required to fully utilize these updates.
More information: https://access.redhat.com/solutions/27943
"""
NO_REBOOT = """No core libraries or services have been updated since boot-up.
Reboot should not be necessary.
"""


def state(root: Path, **kwargs: object) -> dict:
    return reboot_state(NOW, root=root, boot_time=lambda: BOOTED, platform="linux", **kwargs)


@pytest.fixture
def debian_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/debian_version").write_text("12.8\n")
    (root / "var/run").mkdir(parents=True)
    return root


@pytest.fixture
def rhel_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/redhat-release").write_text("Rocky Linux release 9.4 (Blue Onyx)\n")
    return root


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def fake_needs_restarting(
    bin_dir: Path, code: int, stdout: str = "", stderr: str = "", sleep: float = 0
) -> None:
    tool = bin_dir / "needs-restarting"
    tool.write_text(
        NEEDS_RESTARTING.format(
            python=sys.executable, code=code, stdout=stdout, stderr=stderr, sleep=sleep
        )
    )
    tool.chmod(0o755)


# --- Debian and Ubuntu ---------------------------------------------------------------


def test_a_debian_host_without_the_file_needs_no_reboot(debian_root: Path) -> None:
    result = state(debian_root)
    assert result["required"] is False
    assert result["method"] == "debian"
    assert result["packages"] == []


def test_the_reboot_required_file_means_a_reboot_with_the_packages_that_asked(
    debian_root: Path,
) -> None:
    (debian_root / "var/run/reboot-required").write_text("*** System restart required ***\n")
    (debian_root / "var/run/reboot-required.pkgs").write_text(
        "linux-image-6.1.0-28-amd64\nlibc6\nlinux-image-6.1.0-28-amd64\n\n$(rm -rf /)\ndbus\n"
    )
    os.utime(debian_root / "var/run/reboot-required", (NOW - 600, NOW - 600))
    result = state(debian_root)
    assert result["required"] is True
    assert result["reason"] == "System restart required"
    assert result["packages"] == ["linux-image-6.1.0-28-amd64", "libc6", "dbus"]
    assert result["packages_total"] == 3
    assert result["since"] == "2026-11-21T10:58:40Z"


def test_the_reboot_required_file_alone_still_means_a_reboot(debian_root: Path) -> None:
    (debian_root / "var/run/reboot-required").write_text("")
    result = state(debian_root)
    assert result["required"] is True
    assert result["packages"] == []
    assert result["reason"] == "reboot-required file present"


def test_a_long_package_list_is_capped_but_counted(debian_root: Path) -> None:
    (debian_root / "var/run/reboot-required").write_text("*** System restart required ***\n")
    names = [f"lib-package-{n}" for n in range(250)]
    (debian_root / "var/run/reboot-required.pkgs").write_text("\n".join(names) + "\n")
    result = state(debian_root)
    assert result["packages"] == names[:MAX_PACKAGES]
    assert result["packages_total"] == 250


def test_boot_time_and_uptime_let_the_appliance_see_a_reboot(debian_root: Path) -> None:
    result = state(debian_root)
    assert result["boot_time"] == "2026-11-18T11:06:40Z"
    assert result["uptime_s"] == 3 * 86400 + 120
    assert result["checked_at"] == "2026-11-21T11:08:40Z"


# --- RHEL family ------------------------------------------------------------------------


def test_needs_restarting_exit_1_means_a_reboot_with_what_changed(
    rhel_root: Path, bin_dir: Path
) -> None:
    fake_needs_restarting(bin_dir, 1, REBOOT_NEEDED)
    result = state(rhel_root)
    assert result["required"] is True
    assert result["method"] == "needs-restarting"
    assert result["packages"] == ["kernel", "glibc", "systemd"]
    assert (bin_dir / "calls.txt").read_text() == "-r"


def test_needs_restarting_exit_0_means_no_reboot(rhel_root: Path, bin_dir: Path) -> None:
    fake_needs_restarting(bin_dir, 0, NO_REBOOT)
    result = state(rhel_root)
    assert result["required"] is False
    assert result["method"] == "needs-restarting"
    assert result["packages"] == []


def test_without_needs_restarting_the_answer_is_unknown(rhel_root: Path, bin_dir: Path) -> None:
    result = state(rhel_root)
    assert result["required"] is None
    assert result["method"] == "none"
    assert "needs-restarting" in result["reason"]


def test_a_needs_restarting_error_is_unknown_and_says_why(rhel_root: Path, bin_dir: Path) -> None:
    fake_needs_restarting(bin_dir, 2, stderr="Error: rpmdb open failed\n")
    result = state(rhel_root)
    assert result["required"] is None
    assert result["reason"] == "exit code 2: Error: rpmdb open failed"


def test_a_hanging_needs_restarting_is_killed_and_unknown(
    rhel_root: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reboot, "NEEDS_RESTARTING_TIMEOUT_S", 0.5)
    fake_needs_restarting(bin_dir, 1, REBOOT_NEEDED, sleep=30)
    result = state(rhel_root)
    assert result["required"] is None
    assert "timeout" in result["reason"]


# --- Windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "required"), [(True, True), (False, False), (None, None)])
def test_windows_asks_the_hook(tmp_path: Path, answer: bool | None, required: bool | None) -> None:
    result = reboot_state(
        NOW,
        root=tmp_path,
        platform="win32",
        boot_time=lambda: BOOTED,
        windows_reboot_pending=lambda: answer,
    )
    assert result["required"] is required
    assert result["method"] == "windows"


def test_windows_without_a_hook_or_with_a_failing_one_is_unknown(tmp_path: Path) -> None:
    def broken() -> bool:
        raise OSError("registry unavailable")

    for hook in (None, broken):
        result = reboot_state(
            NOW,
            root=tmp_path,
            platform="win32",
            boot_time=lambda: BOOTED,
            windows_reboot_pending=hook,
        )
        assert result["required"] is None
        assert result["method"] == "windows"


# --- this machine -----------------------------------------------------------------------


def test_this_host_answers_in_plain_json() -> None:
    result = reboot_state()
    assert json.loads(json.dumps(result)) == result
    assert result["method"] in ("debian", "needs-restarting", "windows", "none")
    assert result["required"] in (True, False, None)
    assert result["uptime_s"] >= 0
