"""What an installer answers to an `install` or a `dry_run` command, one shape for every
package manager: the agent's installers return these records, the appliance reads their
JSON (appliance/services/updates.py record_install_result, services/dry_runs.py).

Reading is lenient about what older agents left out (a missing list is empty) and
strict about kinds: a value of the wrong kind raises ProtocolError naming the field.
Docker's image details are in kernel/image_results.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernel.image_results import ImageInstall, ImagePlan
from kernel.wire_values import (
    flag,
    records,
    text,
    text_or_none,
    texts,
    whole_or_none,
    wire_object,
)


@dataclass(frozen=True)
class InstalledPackage:
    """A package an install changed, from which version to which ("" when unknown)."""

    package: str
    from_version: str = ""
    to_version: str = ""
    # Docker only: the exact image pulled, and what became of its containers.
    image: str = ""
    status: str = ""

    def to_json(self) -> dict[str, str]:
        item = {"package": self.package, "from": self.from_version, "to": self.to_version}
        if self.image:
            item["image"] = self.image
        if self.status:
            item["status"] = self.status
        return item

    @classmethod
    def from_json(cls, value: Any, where: str = "installed") -> InstalledPackage:
        item = wire_object(value, where)
        return cls(
            package=text(item.get("package"), f"{where}.package", required=True),
            # Docker installs used to send null for a digest they did not know.
            from_version=text(item.get("from"), f"{where}.from"),
            to_version=text(item.get("to"), f"{where}.to"),
            image=text(item.get("image"), f"{where}.image"),
            status=text(item.get("status"), f"{where}.status"),
        )


@dataclass(frozen=True)
class InstallResult:
    """The outcome of installing an approved set of packages on one host.

    Every package asked for ends in `installed` (by name), `unchanged` (already at the
    new version) or `failed`; the appliance counts the first two as done."""

    installed: tuple[InstalledPackage, ...] = ()
    failed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    output_tail: str = ""  # the end of the tool's output, for the history
    reboot_required: bool = False
    error: str | None = None  # why the install as a whole failed, when it did
    exit_code: int | None = None  # the tool's, when one tool ran for all packages
    # Docker only: bare repositories no running container uses, and each image's story.
    not_in_use: tuple[str, ...] = ()
    images: tuple[ImageInstall, ...] = ()

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "installed": [item.to_json() for item in self.installed],
            "failed": list(self.failed),
            "unchanged": list(self.unchanged),
            "output_tail": self.output_tail,
            "reboot_required": self.reboot_required,
        }
        if self.error is not None:
            result["error"] = self.error
        if self.exit_code is not None:
            result["exit_code"] = self.exit_code
        if self.not_in_use:
            result["not_in_use"] = list(self.not_in_use)
        if self.images:
            result["images"] = [image.to_json() for image in self.images]
        return result

    @classmethod
    def from_json(cls, value: Any) -> InstallResult:
        result = wire_object(value, "install result")
        return cls(
            installed=records(result.get("installed"), InstalledPackage.from_json, "installed"),
            failed=texts(result.get("failed"), "failed"),
            unchanged=texts(result.get("unchanged"), "unchanged"),
            output_tail=text(result.get("output_tail"), "output_tail"),
            reboot_required=flag(result.get("reboot_required"), "reboot_required"),
            error=text_or_none(result.get("error"), "error"),
            exit_code=whole_or_none(result.get("exit_code"), "exit_code"),
            not_in_use=texts(result.get("not_in_use"), "not_in_use"),
            images=records(result.get("images"), ImageInstall.from_json, "images"),
        )


@dataclass(frozen=True)
class PlannedChange:
    """A package the transaction of a dry run would touch ("" where the tool does not
    say, e.g. the new version of a removal)."""

    package: str
    arch: str = ""
    from_version: str = ""
    to_version: str = ""
    repository: str = ""  # dnf, winget, Windows Update
    origin: str = ""  # APT: "Debian-Security:12/stable-security"
    replaced_by: str = ""  # dnf: a removal caused by an obsoleting package

    def to_json(self) -> dict[str, str]:
        """The package, and of the rest what the tool said: an APT removal is
        {"package", "from"}, a dnf upgrade has all but "origin" and "replaced_by"."""
        item = {"package": self.package}
        for key, value in (
            ("arch", self.arch),
            ("from", self.from_version),
            ("to", self.to_version),
            ("repository", self.repository),
            ("origin", self.origin),
            ("replaced_by", self.replaced_by),
        ):
            if value:
                item[key] = value
        return item

    @classmethod
    def from_json(cls, value: Any, where: str = "change") -> PlannedChange:
        item = wire_object(value, where)
        return cls(
            package=text(item.get("package"), f"{where}.package", required=True),
            arch=text(item.get("arch"), f"{where}.arch"),
            from_version=text(item.get("from"), f"{where}.from"),
            to_version=text(item.get("to"), f"{where}.to"),
            repository=text(item.get("repository"), f"{where}.repository"),
            origin=text(item.get("origin"), f"{where}.origin"),
            replaced_by=text(item.get("replaced_by"), f"{where}.replaced_by"),
        )


# The parts of a transaction, in the order the JSON lists them.
TRANSACTION_PARTS = ("upgrades", "installs", "removals", "downgrades", "skipped")


@dataclass(frozen=True)
class DryRunResult:
    """What installing exactly the approved packages would do, changing nothing: the
    whole transaction, so that an admin sees removals before saying yes."""

    upgrades: tuple[PlannedChange, ...] = ()
    installs: tuple[PlannedChange, ...] = ()
    removals: tuple[PlannedChange, ...] = ()
    downgrades: tuple[PlannedChange, ...] = ()
    skipped: tuple[PlannedChange, ...] = ()
    missing: tuple[str, ...] = ()  # asked for, but not pending
    raw: str = ""  # the tool's own account, for when the parsing missed something
    # Docker only: the images to pull with the containers each recreates, and bare
    # repositories no running container uses.
    images: tuple[ImagePlan, ...] = ()
    not_in_use: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        plan: dict[str, Any] = {
            part: [change.to_json() for change in getattr(self, part)] for part in TRANSACTION_PARTS
        }
        plan["missing"] = list(self.missing)
        plan["raw"] = self.raw
        if self.images:
            plan["images"] = [image.to_json() for image in self.images]
        if self.not_in_use:
            plan["not_in_use"] = list(self.not_in_use)
        return plan

    @classmethod
    def from_json(cls, value: Any) -> DryRunResult:
        plan = wire_object(value, "dry run")
        parts = {
            part: records(plan.get(part), PlannedChange.from_json, part)
            for part in TRANSACTION_PARTS
        }
        return cls(
            **parts,
            missing=texts(plan.get("missing"), "missing"),
            raw=text(plan.get("raw"), "raw"),
            images=records(plan.get("images"), ImagePlan.from_json, "images"),
            not_in_use=texts(plan.get("not_in_use"), "not_in_use"),
        )
