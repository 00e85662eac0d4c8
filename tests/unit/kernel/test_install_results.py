"""Install and dry-run results, as the appliance reads them: the keys it reads stay
where they are, an older agent's result still reads, a wrong kind is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.image_results import ImageInstall
from kernel.install_results import (
    DryRunResult,
    InstalledPackage,
    InstallResult,
    PlannedChange,
)
from kernel.protocol import ProtocolError


def test_an_install_result_keeps_the_keys_the_appliance_reads() -> None:
    result = InstallResult(
        installed=(InstalledPackage("openssl", "3.0.11-1", "3.0.13-1"),),
        failed=("curl",),
        unchanged=("bash",),
        output_tail="Setting up openssl (3.0.13-1) ...\n",
        reboot_required=True,
    )
    assert result.to_json() == {
        "installed": [{"package": "openssl", "from": "3.0.11-1", "to": "3.0.13-1"}],
        "failed": ["curl"],
        "unchanged": ["bash"],
        "output_tail": "Setting up openssl (3.0.13-1) ...\n",
        "reboot_required": True,
    }


def test_an_error_an_exit_code_and_the_docker_parts_are_sent_only_when_there_are_any() -> None:
    image = ImageInstall("nginx:1.27", "nginx", "failed", error="pull failed")
    result = InstallResult(error="nginx:1.27: pull failed", exit_code=1, images=(image,))
    sent = result.to_json()
    assert sent["error"] == "nginx:1.27: pull failed"
    assert sent["exit_code"] == 1
    assert sent["images"] == [image.to_json()]
    assert "not_in_use" not in sent
    assert {"error", "exit_code", "images", "not_in_use"}.isdisjoint(InstallResult().to_json())


def test_an_install_result_of_an_older_agent_reads() -> None:
    # APT results had no "unchanged"; Docker's had no output and null digests.
    assert InstallResult.from_json(
        {"installed": [], "failed": ["openssl"], "output_tail": "E: x", "error": "E: x"}
    ) == InstallResult(failed=("openssl",), output_tail="E: x", error="E: x")
    docker = InstallResult.from_json(
        {
            "installed": [
                {"package": "nginx", "image": "nginx:1", "from": None, "to": "sha256:1"}
                | {"status": "pulled"}
            ],
            "failed": [],
            "not_in_use": [],
            "images": [],
        }
    )
    assert docker.installed == (InstalledPackage("nginx", "", "sha256:1", "nginx:1", "pulled"),)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"installed": [{"from": "1", "to": "2"}]}, r"installed\[0\]\.package"),
        ({"installed": ["openssl"]}, r"installed\[0\]: an object"),
        ({"installed": {"openssl": "2"}}, "installed: a list"),
        ({"failed": "openssl"}, "failed: a list of texts"),
        ({"unchanged": [1]}, "unchanged: a list of texts"),
        ({"output_tail": ["line"]}, "output_tail: text"),
        ({"reboot_required": "yes"}, "reboot_required: true or false"),
        ({"exit_code": 1.5}, "exit_code: a whole number"),
        ({"images": [{"image": "nginx:1", "status": "exploded"}]}, r"images\[0\]\.status"),
    ],
)
def test_an_install_result_with_a_value_of_the_wrong_kind_is_refused_by_name(
    result: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        InstallResult.from_json(result)


def test_a_dry_run_lists_every_part_of_the_transaction_even_when_empty() -> None:
    plan = DryRunResult(removals=(PlannedChange("libold1", "amd64", "1.0-1"),), raw="Remv ...")
    assert plan.to_json() == {
        "upgrades": [],
        "installs": [],
        "removals": [{"package": "libold1", "arch": "amd64", "from": "1.0-1"}],
        "downgrades": [],
        "skipped": [],
        "missing": [],
        "raw": "Remv ...",
    }


def test_a_planned_change_says_only_what_the_tool_said() -> None:
    change = PlannedChange("grub2-tools-efi", "x86_64", "1:2.06", replaced_by="grub2-tools-extra")
    assert change.to_json() == {
        "package": "grub2-tools-efi",
        "arch": "x86_64",
        "from": "1:2.06",
        "replaced_by": "grub2-tools-extra",
    }
    # As the APT dry run always sent a removal.
    assert PlannedChange("libold1", from_version="1.0-1").to_json() == {
        "package": "libold1",
        "from": "1.0-1",
    }


def test_a_dry_run_with_a_change_of_the_wrong_kind_is_refused_by_name() -> None:
    with pytest.raises(ProtocolError, match=r"removals\[0\]\.from: text"):
        DryRunResult.from_json({"removals": [{"package": "x", "from": 1}]})
