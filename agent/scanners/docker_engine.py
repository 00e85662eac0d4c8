"""The part of the Docker Engine API the scanner and installer use: running containers,
image inspection and pulls, over the Engine's unix socket (or tcp://) with
agent/http_client.py. The API version is the one the Engine says it speaks.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.http_client import HTTPClient, HTTPFailure, Response
from kernel.sanitise import sanitise_text

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
TIMEOUT_S = 30.0  # connecting, and each wait for data (a pull streams its progress)


class DockerEngineUnavailable(RuntimeError):
    """The Docker Engine API did not answer (daemon down, socket missing, permissions)."""


class EngineRefused(RuntimeError):
    """The Engine answered with an error; its own message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def engine_url(base_url: str | None) -> str:
    return base_url or os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def engine_usable(base_url: str) -> bool:
    """Whether this agent can use the Engine at all: for a socket, that it exists and
    the agent may open it (an unprivileged agent usually may not, on purpose)."""
    if base_url.startswith("unix://"):
        path = base_url[len("unix://") :]
        return Path(path).exists() and os.access(path, os.R_OK | os.W_OK)
    return True


@dataclass(frozen=True)
class RunningContainer:
    name: str
    image: str  # the reference it was created from (Config.Image)
    image_id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str:
        return sanitise_text(self.labels.get(key) or "", 1024)


class DockerEngine:
    """One Engine; connects (and asks its API version) on creation."""

    def __init__(self, base_url: str, timeout_s: float = TIMEOUT_S):
        self.base_url = base_url
        if base_url.startswith("unix://") and not Path(base_url[len("unix://") :]).exists():
            raise DockerEngineUnavailable(f"Docker Engine at {base_url}: no such socket")
        if base_url.startswith("tcp://"):
            base_url = "http://" + base_url[len("tcp://") :]
        if not base_url.startswith(("unix://", "http://", "https://")):
            raise DockerEngineUnavailable(
                f"Docker Engine at {self.base_url}: only unix:// and tcp:// engines are supported"
            )
        self._http = HTTPClient(base_url, timeout=timeout_s)
        where = f"Docker Engine at {self.base_url}"
        try:
            version = self._json("GET", "/version", where)
            self._api = f"/v{version['ApiVersion']}"
        except (KeyError, TypeError) as exc:
            self.close()
            raise DockerEngineUnavailable(f"{where}: its answer has no API version") from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def running_containers(self) -> list[RunningContainer]:
        """Each running container with the reference it was created from; one removed
        while we look is left out."""
        found = []
        for summary in self._json("GET", f"{self._api}/containers/json", "listing containers"):
            attrs = self._json(
                "GET",
                f"{self._api}/containers/{quote(str(summary.get('Id', '')))}/json",
                "inspecting a container",
                missing_ok=True,
            )
            if attrs is None:
                continue
            config = attrs.get("Config") or {}
            found.append(
                RunningContainer(
                    name=sanitise_text(str(attrs.get("Name") or "").lstrip("/"), 255),
                    image=config.get("Image") or "",
                    image_id=attrs.get("Image") or "",
                    labels=config.get("Labels") or {},
                )
            )
        return found

    def image(self, name: str) -> dict[str, Any] | None:
        """The Engine's inspection of a local image (by id or reference); None if absent."""
        return self._json(
            "GET",
            f"{self._api}/images/{quote(name, safe='/:@')}/json",
            f"inspecting image {name[:19]}",
            missing_ok=True,
        )

    def pull(
        self,
        repository: str,
        tag: str,
        auth: Mapping[str, str],
        on_progress: Callable[[dict[str, Any]], None],
    ) -> None:
        """Pull `repository:tag`, handing each progress line (JSON) over as it comes.
        EngineRefused when the Engine refuses the pull."""
        headers = {}
        if auth:
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(
                json.dumps(dict(auth)).encode()
            ).decode()

        def progress(line: bytes) -> None:
            if not line.strip():
                return
            try:
                report = json.loads(line)
            except ValueError:
                raise DockerEngineUnavailable(f"pulling {repository}:{tag}: not JSON") from None
            on_progress(report)

        answer = self._call(
            "POST",
            f"{self._api}/images/create",
            f"pulling {repository}:{tag}",
            params={"fromImage": repository, "tag": tag},
            headers=headers,
            on_line=progress,
        )
        if answer.status >= 400:
            raise EngineRefused(answer.status, _message(answer))

    def _json(self, method: str, path: str, doing: str, missing_ok: bool = False) -> Any:
        answer = self._call(method, path, doing)
        if missing_ok and answer.status == 404:
            return None
        if answer.status >= 400:
            raise DockerEngineUnavailable(f"{doing}: {_message(answer)}")
        try:
            return json.loads(answer.body)
        except ValueError as exc:
            raise DockerEngineUnavailable(f"{doing}: the Engine's answer is not JSON") from exc

    def _call(self, method: str, path: str, doing: str, **options: Any) -> Response:
        try:
            return self._http.request(method, path, **options)
        except HTTPFailure as exc:
            raise DockerEngineUnavailable(f"{doing}: {exc}") from None


def _message(answer: Response) -> str:
    try:
        message = json.loads(answer.body).get("message")
    except (ValueError, AttributeError):
        message = None
    return sanitise_text(message or f"HTTP {answer.status} {answer.text[:200]}", 500)
