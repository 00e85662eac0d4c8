"""Docker's part of the install and dry-run results (kernel/install_results.py): per
image, what is pulled and which containers are recreated through Compose or have to be
restarted by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernel.protocol import ProtocolError
from kernel.wire_values import records, text, text_or_none, texts, whole, wire_object

# What became of an image and the containers running it, as the install says.
IMAGE_STATES = ("recreated", "pulled, restart needed", "pulled", "up to date", "failed")


@dataclass(frozen=True)
class RestartNeeded:
    """A container running the image that the agent cannot recreate itself."""

    container: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"container": self.container, "reason": self.reason}

    @classmethod
    def from_json(cls, value: Any, where: str = "restart_needed") -> RestartNeeded:
        item = wire_object(value, where)
        return cls(
            text(item.get("container"), f"{where}.container", required=True),
            text(item.get("reason"), f"{where}.reason"),
        )


@dataclass(frozen=True)
class ComposePlan:
    """The services of one Compose project a dry run would recreate, and how."""

    project: str
    working_dir: str
    services: tuple[str, ...]
    containers: tuple[str, ...]
    command: tuple[str, ...]  # the argument list the install would run

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "working_dir": self.working_dir,
            "services": list(self.services),
            "containers": list(self.containers),
            "command": list(self.command),
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "recreate") -> ComposePlan:
        item = wire_object(value, where)
        return cls(
            project=text(item.get("project"), f"{where}.project", required=True),
            working_dir=text(item.get("working_dir"), f"{where}.working_dir"),
            services=texts(item.get("services"), f"{where}.services"),
            containers=texts(item.get("containers"), f"{where}.containers"),
            command=texts(item.get("command"), f"{where}.command"),
        )


@dataclass(frozen=True)
class ImagePlan:
    """One image a dry run would pull, with the containers that would follow it."""

    image: str
    pull: str
    recreate: tuple[ComposePlan, ...] = ()
    restart_needed: tuple[RestartNeeded, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "pull": self.pull,
            "recreate": [plan.to_json() for plan in self.recreate],
            "restart_needed": [r.to_json() for r in self.restart_needed],
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "images") -> ImagePlan:
        item = wire_object(value, where)
        return cls(
            image=text(item.get("image"), f"{where}.image", required=True),
            pull=text(item.get("pull"), f"{where}.pull"),
            recreate=records(item.get("recreate"), ComposePlan.from_json, f"{where}.recreate"),
            restart_needed=records(
                item.get("restart_needed"), RestartNeeded.from_json, f"{where}.restart_needed"
            ),
        )


@dataclass(frozen=True)
class ComposeRun:
    """One `docker compose up` the install ran, and its exit code (-1: it could not
    run, or was killed after its timeout)."""

    project: str
    services: tuple[str, ...]
    containers: tuple[str, ...]
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "services": list(self.services),
            "containers": list(self.containers),
            "exit_code": self.exit_code,
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "recreated") -> ComposeRun:
        item = wire_object(value, where)
        return cls(
            project=text(item.get("project"), f"{where}.project", required=True),
            services=texts(item.get("services"), f"{where}.services"),
            containers=texts(item.get("containers"), f"{where}.containers"),
            exit_code=whole(item.get("exit_code"), f"{where}.exit_code"),
        )


@dataclass(frozen=True)
class ImageInstall:
    """What the install did for one image: pulled (digest before and after), the
    Compose services recreated, the containers left to restart by hand."""

    image: str
    package: str  # the repository, as the update record names it
    status: str  # one of IMAGE_STATES
    image_id: str | None = None
    previous_digest: str | None = None
    digest: str | None = None
    recreated: tuple[ComposeRun, ...] = ()
    restart_needed: tuple[RestartNeeded, ...] = ()
    message: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "package": self.package,
            "status": self.status,
            "image_id": self.image_id,
            "previous_digest": self.previous_digest,
            "digest": self.digest,
            "recreated": [run.to_json() for run in self.recreated],
            "restart_needed": [r.to_json() for r in self.restart_needed],
            "message": self.message,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "images") -> ImageInstall:
        item = wire_object(value, where)
        status = item.get("status")
        if status not in IMAGE_STATES:
            raise ProtocolError(f"{where}.status: one of {', '.join(IMAGE_STATES)}")
        return cls(
            image=text(item.get("image"), f"{where}.image", required=True),
            package=text(item.get("package"), f"{where}.package"),
            status=status,
            image_id=text_or_none(item.get("image_id"), f"{where}.image_id"),
            previous_digest=text_or_none(item.get("previous_digest"), f"{where}.previous_digest"),
            digest=text_or_none(item.get("digest"), f"{where}.digest"),
            recreated=records(item.get("recreated"), ComposeRun.from_json, f"{where}.recreated"),
            restart_needed=records(
                item.get("restart_needed"), RestartNeeded.from_json, f"{where}.restart_needed"
            ),
            message=text(item.get("message"), f"{where}.message"),
            error=text_or_none(item.get("error"), f"{where}.error"),
        )
