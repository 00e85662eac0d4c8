"""Docker images: which running containers' tags have moved on in their registry, and
installing that by pulling the new image and recreating Compose-managed containers.

Local digests come from the Engine (agent/scanners/docker_engine.py); remote digests
from the registry (agent/scanners/docker_registry.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from agent import process
from agent.scanners.docker_config import RegistryCredentials
from agent.scanners.docker_engine import (
    DockerEngine,
    DockerEngineUnavailable,
    EngineRefused,
    RunningContainer,
    engine_url,
    engine_usable,
)
from agent.scanners.docker_registry import (
    ImageReference,
    InvalidImageReference,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    RegistryUrls,
    parse_image_reference,
    repository_of,
)
from agent.scanners.registry import register
from kernel.image_results import ComposePlan, ComposeRun, ImageInstall, ImagePlan, RestartNeeded
from kernel.install_results import DryRunResult, InstalledPackage, InstallResult
from kernel.logs import log_event
from kernel.protocol import ProtocolError, UpdateRecord, check_package_name, check_version
from kernel.sanitise import sanitise_text

__all__ = ["DockerEngineUnavailable", "DockerInstaller", "DockerScanner"]

logger = logging.getLogger("redflag.agent.scanners.docker")

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_DIR = "com.docker.compose.project.working_dir"
COMPOSE_FILES = "com.docker.compose.project.config_files"
COMPOSE_SERVICE = "com.docker.compose.service"
_COMPOSE_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}\Z")
_COMPOSE_SERVICE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}\Z")


# --- the engine ------------------------------------------------------------------------


def _repo_digests(engine: DockerEngine, image_id: str) -> dict[str, set[str]]:
    """{"docker.io/library/nginx": {"sha256:..."}} for one local image."""
    attrs = engine.image(image_id) or {}
    digests: dict[str, set[str]] = {}
    for entry in attrs.get("RepoDigests") or []:
        parsed = repository_of(str(entry))
        if parsed:
            digests.setdefault(parsed[0], set()).add(parsed[1])
    return digests


def _group_by_image(
    containers: Iterable[RunningContainer],
) -> tuple[dict[str, tuple[ImageReference, list[RunningContainer]]], list[dict[str, Any]]]:
    groups: dict[str, tuple[ImageReference, list[RunningContainer]]] = {}
    skipped: list[dict[str, Any]] = []
    for container in containers:
        try:
            reference = parse_image_reference(container.image)
        except InvalidImageReference as exc:
            reason = "pinned by digest" if "pinned by digest" in str(exc) else str(exc)
            skipped.append(
                {"image": sanitise_text(container.image, 200), "container": container.name}
                | {"reason": reason}
            )
            continue
        groups.setdefault(reference.canonical, (reference, []))[1].append(container)
    return groups, skipped


# --- the scanner -----------------------------------------------------------------------


class DockerScanner:
    """One update per image tag whose registry digest differs from the digest of the
    image its running containers use.

    A failed lookup of one image does not hide the others: the scan returns what it
    found and lists the failures in `last_report["errors"]`. Only when every lookup
    failed does it raise RegistryUnavailable, which the daemon's breaker counts.
    """

    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        registry_urls: RegistryUrls = None,
        docker_config: Path | None = None,
        timeout_s: float = 15.0,
        transport: Any = None,
    ):
        self.base_url = engine_url(base_url)
        self.registry_urls = registry_urls
        self.docker_config = docker_config
        self.timeout_s = timeout_s
        self.transport = transport
        self.last_report: dict[str, Any] = {"updates": [], "skipped": [], "errors": []}

    def available(self) -> bool:
        return engine_usable(self.base_url)

    def scan(self) -> list[dict[str, Any]]:
        return self.scan_report()["updates"]

    def unchecked_packages(self) -> list[str]:
        """Images whose registry lookup failed in the last scan: the appliance must not
        take their absence from the report as 'updated'."""
        packages = []
        for error in self.last_report.get("errors", []):
            try:
                packages.append(parse_image_reference(error.get("image")).image)
            except ProtocolError:
                continue
        return sorted(set(packages))

    def scan_report(self) -> dict[str, Any]:
        """{"updates": [UpdateRecord json], "skipped": [{image, container, reason}],
        "errors": [{image, error}]}."""
        engine = DockerEngine(self.base_url)
        registry = RegistryClient(
            RegistryCredentials(self.docker_config),
            self.registry_urls,
            timeout_s=self.timeout_s,
            transport=self.transport,
        )
        try:
            report = self._scan(engine, registry)
        finally:
            registry.close()
            engine.close()
        self.last_report = report
        errors, looked_up = report["errors"], report.pop("looked_up")
        if looked_up and len(errors) == looked_up:
            raise RegistryUnavailable(
                f"all {looked_up} registry lookups failed; first: {errors[0]['error']}"
            )
        return report

    def _scan(self, engine: DockerEngine, registry: RegistryClient) -> dict[str, Any]:
        groups, skipped = _group_by_image(engine.running_containers())
        updates: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        looked_up = 0
        for reference, containers in groups.values():
            local = _local_digests(engine, reference, containers)
            if not local:
                names = [c.name for c in containers]
                skipped += [
                    {"image": reference.image, "container": name}
                    | {"reason": "no registry digest locally (built here or never pulled)"}
                    for name in names
                ]
                continue
            looked_up += 1
            try:
                remote = registry.manifest_digest(reference)
            except RegistryError as exc:
                errors.append({"image": reference.image, "error": sanitise_text(exc, 500)})
                continue
            outdated = [c for c in containers if remote not in local.get(c.image_id, set())]
            if outdated:
                current = sorted(local.get(outdated[0].image_id) or {""})[0]
                updates.append(_update_record(reference, current, remote, outdated))
        for problem in skipped:
            log_event(logger, logging.INFO, "agent.docker_image_skipped", **problem)
        for problem in errors:
            log_event(logger, logging.WARNING, "agent.docker_registry_failed", **problem)
        return {"updates": updates, "skipped": skipped, "errors": errors, "looked_up": looked_up}


def _local_digests(
    engine: DockerEngine, reference: ImageReference, containers: list[RunningContainer]
) -> dict[str, set[str]]:
    """image id -> the digests recorded for this repository when that image was pulled."""
    repository = f"{reference.domain}/{reference.path}"
    found = {}
    for image_id in {c.image_id for c in containers}:
        digests = _repo_digests(engine, image_id).get(repository)
        if digests:
            found[image_id] = digests
    return found


def _update_record(
    reference: ImageReference, current: str, remote: str, containers: list[RunningContainer]
) -> dict[str, Any]:
    projects = _compose_projects(containers)
    return UpdateRecord(
        source="docker",
        # One row per tag: nginx:1.26 and nginx:1.27 are separate updates.
        package=check_package_name("docker", reference.image),
        available_version=check_version(remote, "registry digest"),
        current_version=check_version(current, "local digest", empty_ok=True),
        origin=reference.domain,
        details={
            "image": reference.image,
            "tag": reference.tag,
            "containers": sorted(c.name for c in containers),
            "compose_project": projects[0]["project"] if len(projects) == 1 else None,
            "compose_dir": projects[0]["working_dir"] if len(projects) == 1 else None,
            "compose": projects,
        },
    ).to_json()


def _compose_projects(containers: Iterable[RunningContainer]) -> list[dict[str, Any]]:
    projects: dict[tuple[str, str], set[str]] = {}
    for c in containers:
        if c.label(COMPOSE_PROJECT):
            key = (c.label(COMPOSE_PROJECT), c.label(COMPOSE_DIR))
            projects.setdefault(key, set()).add(c.label(COMPOSE_SERVICE))
    return [
        {"project": project, "working_dir": directory or None, "services": sorted(services)}
        for (project, directory), services in sorted(projects.items())
    ]


# --- the installer ---------------------------------------------------------------------


@dataclass
class _ImagePlan:
    reference: ImageReference
    containers: list[RunningContainer]
    # (project, working_dir, config files) -> (services, container names)
    compose: dict[tuple[str, str, tuple[str, ...]], tuple[set[str], list[str]]]
    restart_needed: list[RestartNeeded]


class DockerInstaller:
    """Pulls approved images; recreates Compose-managed containers with
    `docker compose -p PROJECT up -d --no-deps SERVICE...` in the project directory;
    reports every other container using the image as "pulled, restart needed".

    `packages` are update records' package names ("nginx": every tag of it that running
    containers use) or exact references ("nginx:1.27")."""

    source = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        docker_config: Path | None = None,
        docker_cli: str = "docker",
        compose_timeout_s: float = 900.0,
    ):
        self.base_url = engine_url(base_url)
        self.explicit_engine = base_url is not None
        self.docker_config = docker_config
        self.docker_cli = docker_cli
        self.compose_timeout_s = compose_timeout_s

    def dry_run(self, packages: Sequence[str]) -> DryRunResult:
        """The images to pull, each with the Compose services it would recreate and the
        containers to restart by hand; bare repositories no container uses."""
        requested = _validated(packages)
        with DockerEngine(self.base_url) as engine:
            containers = engine.running_containers()
        targets, unused = _targets(requested, containers)
        plans = [self._plan(reference, containers) for reference in targets]
        return DryRunResult(
            images=tuple(
                ImagePlan(
                    image=plan.reference.image,
                    pull=plan.reference.image,
                    recreate=tuple(
                        ComposePlan(
                            project=project,
                            working_dir=directory,
                            services=tuple(sorted(services)),
                            containers=tuple(sorted(names)),
                            command=tuple(self._compose_command(project, files, services)),
                        )
                        for (project, directory, files), (services, names) in plan.compose.items()
                    ),
                    restart_needed=tuple(plan.restart_needed),
                )
                for plan in plans
            ),
            not_in_use=tuple(unused),
        )

    def install(self, packages: Sequence[str], on_output: Callable[[str], None]) -> InstallResult:
        """Pull each image and recreate what runs it. `installed` names each image
        that did not fail (with its digest before and after and its status), `images`
        tells each image's story, `error` says what failed when something did."""
        requested = _validated(packages)
        credentials = RegistryCredentials(self.docker_config)
        with DockerEngine(self.base_url) as engine:
            containers = engine.running_containers()
            targets, unused = _targets(requested, containers)
            results = [
                self._install_one(engine, credentials, self._plan(r, containers), on_output)
                for r in targets
            ]
        for package in unused:
            on_output(f"{package}: no running container uses it; nothing pulled")
        errors = [f"{r.image}: {r.error}" for r in results if r.error]
        return InstallResult(
            installed=tuple(
                InstalledPackage(
                    r.package, r.previous_digest or "", r.digest or "", r.image, r.status
                )
                for r in results
                if r.status != "failed"
            ),
            failed=tuple(r.image for r in results if r.status == "failed"),
            not_in_use=tuple(unused),
            images=tuple(results),
            error=sanitise_text("; ".join(errors), 1000) if errors else None,
        )

    def _install_one(
        self,
        engine: DockerEngine,
        credentials: RegistryCredentials,
        plan: _ImagePlan,
        on_output: Callable[[str], None],
    ) -> ImageInstall:
        reference = plan.reference
        previous = None
        try:
            previous = _previous_digest(engine, reference, plan.containers)
            on_output(f"pulling {reference.image}")
            new_id, digest = _pull(engine, credentials, reference, on_output)
        except (DockerEngineUnavailable, RegistryError) as exc:
            error = sanitise_text(exc, 500)
            return ImageInstall(
                reference.image,
                reference.repository,
                "failed",
                previous_digest=previous,
                message=f"pull failed: {error}",
                error=error,
            )
        pulled = ImageInstall(
            reference.image,
            reference.repository,
            "pulled",
            image_id=new_id,
            previous_digest=previous,
            digest=digest,
        )
        stale = {c.name for c in plan.containers if c.image_id != new_id}
        if plan.containers and not stale:
            return replace(pulled, status="up to date", message="containers already run it")
        recreated = tuple(
            self._compose_up(project, directory, files, services, names, on_output)
            for (project, directory, files), (services, names) in plan.compose.items()
            if stale & set(names)
        )
        restart_needed = tuple(r for r in plan.restart_needed if r.container in stale)
        done = replace(pulled, recreated=recreated, restart_needed=restart_needed)
        failed = [r for r in recreated if r.exit_code != 0]
        if failed:
            error = f"docker compose failed for {', '.join(r.project for r in failed)}"
            return replace(done, status="failed", message=error, error=error)
        if restart_needed:
            names = ", ".join(r.container for r in restart_needed)
            return replace(done, status="pulled, restart needed", message=f"restart: {names}")
        status = "recreated" if recreated else "pulled"
        return replace(done, status=status, message=status)

    def _plan(self, reference: ImageReference, containers: list[RunningContainer]) -> _ImagePlan:
        plan = _ImagePlan(reference, [], {}, [])
        cli = shutil.which(self.docker_cli)
        for container in containers:
            try:
                if parse_image_reference(container.image).canonical != reference.canonical:
                    continue
            except InvalidImageReference:
                continue
            plan.containers.append(container)
            key, reason = _compose_key(container)
            if key and not cli:
                key, reason = None, f"Compose-managed, but no '{self.docker_cli}' command on PATH"
            if key:
                services, names = plan.compose.setdefault(key, (set(), []))
                services.add(container.label(COMPOSE_SERVICE))
                names.append(container.name)
            else:
                plan.restart_needed.append(RestartNeeded(container.name, reason))
        return plan

    def _compose_command(
        self, project: str, files: tuple[str, ...], services: Iterable[str]
    ) -> list[str]:
        command = [shutil.which(self.docker_cli) or self.docker_cli, "compose", "-p", project]
        for path in files:
            command += ["-f", path]
        return [*command, "up", "-d", "--no-deps", *sorted(services)]

    def _compose_up(
        self,
        project: str,
        directory: str,
        files: tuple[str, ...],
        services: set[str],
        names: list[str],
        on_output: Callable[[str], None],
    ) -> ComposeRun:
        command = self._compose_command(project, files, services)
        on_output(f"recreating {', '.join(sorted(services))} of Compose project {project}")
        env = {"DOCKER_HOST": self.base_url} if self.explicit_engine else None
        outcome = partial(ComposeRun, project, tuple(sorted(services)), tuple(sorted(names)))
        try:
            finished = process.run(
                command,
                timeout_s=self.compose_timeout_s,
                env=env,
                cwd=directory,
                on_line=lambda line: on_output(sanitise_text(line, 1000)),
            )
        except (process.CommandTimedOut, OSError) as exc:
            on_output(sanitise_text(f"docker compose: {exc}", 1000))
            return outcome(-1)
        for line in finished.stderr.splitlines()[-50:]:
            on_output(sanitise_text(line, 1000))
        return outcome(finished.returncode)


def _validated(packages: Sequence[str]) -> list[tuple[ImageReference, bool]]:
    """Every name checked before anything runs: one bad name refuses the whole request.
    Each comes back with whether it named a tag."""
    if isinstance(packages, str) or not isinstance(packages, Sequence) or not packages:
        raise InvalidImageReference("packages: a non-empty list of image names")
    return [(parse_image_reference(text), ":" in text.rsplit("/", 1)[-1]) for text in packages]


def _targets(
    requested: list[tuple[ImageReference, bool]], containers: list[RunningContainer]
) -> tuple[list[ImageReference], list[str]]:
    """The image tags to pull: those named, and for a bare repository every tag of it
    that running containers use. Also the bare repositories nothing uses."""
    in_use: dict[str, dict[str, ImageReference]] = {}
    for container in containers:
        try:
            reference = parse_image_reference(container.image)
        except InvalidImageReference:
            continue
        in_use.setdefault(f"{reference.domain}/{reference.path}", {})[reference.canonical] = (
            reference
        )
    targets: dict[str, ImageReference] = {}
    unused: list[str] = []
    for reference, tagged in requested:
        used = in_use.get(f"{reference.domain}/{reference.path}")
        if tagged:
            targets[reference.canonical] = reference
        elif used:
            targets.update(sorted(used.items()))
        else:
            unused.append(reference.repository)
    return list(targets.values()), unused


def _previous_digest(
    engine: DockerEngine, reference: ImageReference, containers: list[RunningContainer]
) -> str | None:
    local = _local_digests(engine, reference, containers)
    return min((min(d) for d in local.values()), default=None)


def _compose_key(
    container: RunningContainer,
) -> tuple[tuple[str, str, tuple[str, ...]] | None, str]:
    """The Compose project that can recreate this container, or why none can."""
    project, directory = container.label(COMPOSE_PROJECT), container.label(COMPOSE_DIR)
    service = container.label(COMPOSE_SERVICE)
    if not project:
        return None, "not managed by Compose"
    if not _COMPOSE_PROJECT_RE.match(project) or not _COMPOSE_SERVICE_RE.match(service):
        return None, "Compose labels are not valid project/service names"
    if not os.path.isabs(directory) or not os.path.isdir(directory):
        return None, f"Compose project directory {directory!r} does not exist"
    files = tuple(f for f in container.label(COMPOSE_FILES).split(",") if f)
    missing = [f for f in files if not os.path.isabs(f) or not os.path.isfile(f)]
    if missing:
        return None, f"Compose file {missing[0]!r} does not exist"
    return (project, directory, files), ""


def _pull(
    engine: DockerEngine,
    credentials: RegistryCredentials,
    reference: ImageReference,
    on_output: Callable[[str], None],
) -> tuple[str, str | None]:
    """Pull through the engine, streaming its status lines; (new image id, digest)."""

    def progress(line: dict[str, Any]) -> None:
        if line.get("error"):
            raise RegistryError(str(line["error"]))
        if (line.get("progressDetail") or {}).get("total"):
            return  # byte counters: one line per chunk, not worth keeping
        text = " ".join(str(line[k]) for k in ("id", "status") if line.get(k))
        if text:
            on_output(sanitise_text(text, 500))

    try:
        engine.pull(
            reference.repository,
            reference.tag,
            credentials.engine_auth(reference.domain),
            progress,
        )
    except EngineRefused as exc:
        raise RegistryError(f"{reference.image}: {exc}") from None
    attrs = engine.image(reference.image)
    if attrs is None:
        raise RegistryError(f"{reference.image}: not among the Engine's images after the pull")
    repository = f"{reference.domain}/{reference.path}"
    digests = sorted(
        parsed[1]
        for entry in attrs.get("RepoDigests") or []
        if (parsed := repository_of(str(entry))) and parsed[0] == repository
    )
    return attrs["Id"], (digests[0] if digests else None)


register("docker", scanner=lambda config: DockerScanner(), installer=DockerInstaller)
