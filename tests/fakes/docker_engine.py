"""A fake Docker Engine: the Engine API endpoints the agent calls (the same the docker
SDK calls), served over HTTP on a unix socket from an in-memory state, so the agent's
real Engine client (agent/scanners/docker_engine.py) runs against it.

    with FakeDockerEngine(tmp_path / "docker.sock") as engine:
        engine.add_image("nginx:1.27", digest=OLD)
        engine.add_container("web", "nginx:1.27")
        scanner = DockerScanner(engine.base_url)
"""

from __future__ import annotations

import hashlib
import json
import re
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "1.45"
_VERSIONED = re.compile(r"^/v[0-9]+\.[0-9]+(?P<rest>/.*)$")


def fake_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _with_tag(name: str) -> str:
    """ "nginx" -> "nginx:latest"; names with a registry port keep it."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class FakeImage:
    id: str  # "sha256:<64 hex>"
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "RepoTags": list(self.repo_tags),
            "RepoDigests": list(self.repo_digests),
            "Created": "2026-01-01T00:00:00Z",
            "Os": "linux",
            "Architecture": "amd64",
            "Size": 1000,
        }


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str  # the reference it was created from
    image_id: str
    labels: dict[str, str] = field(default_factory=dict)
    running: bool = True

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": "run",
            "Created": 1767225600,
            "Labels": dict(self.labels),
            "State": "running" if self.running else "exited",
            "Status": "Up 2 hours" if self.running else "Exited (0)",
            "Ports": [],
        }

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Image": self.image_id,
            "Config": {"Image": self.image, "Labels": dict(self.labels)},
            "State": {"Status": "running" if self.running else "exited", "Running": self.running},
        }


@dataclass
class EngineState:
    images: dict[str, FakeImage] = field(default_factory=dict)
    containers: list[FakeContainer] = field(default_factory=list)
    # What a pull of "name:tag" brings: the image the registry serves now.
    pullable: dict[str, FakeImage] = field(default_factory=dict)
    pull_error: str | None = None  # streamed as an error line, as the engine does
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def find_image(self, name: str) -> FakeImage | None:
        wanted = name.removeprefix("sha256:")
        for image in self.images.values():
            if image.id.removeprefix("sha256:").startswith(wanted) and len(wanted) >= 12:
                return image
        tagged = _with_tag(name)
        return next((i for i in self.images.values() if tagged in i.repo_tags), None)

    def find_container(self, key: str) -> FakeContainer | None:
        return next(
            (c for c in self.containers if c.name == key or c.id.startswith(key)),
            None,
        )

    def pull(self, reference: str) -> FakeImage | None:
        new = self.pullable.get(reference)
        if new is None:
            return None
        for image in self.images.values():
            if reference in image.repo_tags:
                image.repo_tags.remove(reference)
        image = self.images.setdefault(new.id, FakeImage(new.id))
        image.repo_tags = sorted({*image.repo_tags, reference})
        image.repo_digests = sorted({*image.repo_digests, *new.repo_digests})
        return image


class _EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDocker/26.1"
    timeout = 5  # idle keep-alive connections end, so shutdown stays bounded
    server: _EngineServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a unix socket has no client address to log

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        state = self.server.state
        with state.lock:
            state.requests.append(
                (method, path + (f"?{url.query}" if url.query else ""), dict(self.headers.items()))
            )
        versioned = _VERSIONED.match(path)
        route = versioned["rest"] if versioned else path
        if route == "/_ping":
            return self._send(200, b"OK", "text/plain")
        if route == "/version":
            return self._json(
                200,
                {
                    "ApiVersion": API_VERSION,
                    "Version": "26.1.0",
                    "MinAPIVersion": "1.24",
                    "Os": "linux",
                    "Arch": "amd64",
                },
            )
        if route == "/containers/json" and method == "GET":
            show_all = query.get("all") in ("1", "true", "True")
            with state.lock:
                found = [c.summary() for c in state.containers if show_all or c.running]
            return self._json(200, found)
        if match := re.fullmatch(r"/containers/(?P<key>[^/]+)/json", route):
            with state.lock:
                container = state.find_container(match["key"])
                answer = container.inspect() if container else None
            if answer is None:
                return self._json(404, {"message": f"No such container: {match['key']}"})
            return self._json(200, answer)
        if route == "/images/create" and method == "POST":
            return self._pull(query)
        if match := re.fullmatch(r"/images/(?P<name>.+)/json", route):
            with state.lock:
                image = state.find_image(match["name"])
                answer = image.inspect() if image else None
            if answer is None:
                return self._json(404, {"message": f"No such image: {match['name']}"})
            return self._json(200, answer)
        return self._json(404, {"message": "page not found"})

    def _pull(self, query: dict[str, str]) -> None:
        reference = f"{query.get('fromImage', '')}:{query.get('tag') or 'latest'}"
        state = self.server.state
        with state.lock:
            error = state.pull_error
            image = None if error else state.pull(reference)
        if not error and image is None:
            return self._json(404, {"message": f"manifest for {reference} not found"})
        name, tag = reference.rsplit(":", 1)
        lines: list[dict[str, Any]] = [{"status": f"Pulling from {name}", "id": tag}]
        if error:
            lines.append({"errorDetail": {"message": error}, "error": error})
        else:
            layer = image.id.removeprefix("sha256:")[:12]
            lines += [
                {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
                {
                    "status": "Downloading",
                    "id": layer,
                    "progressDetail": {"current": 512, "total": 1024},
                    "progress": "[=>  ]",
                },
                {"status": "Pull complete", "progressDetail": {}, "id": layer},
                {"status": f"Digest: {image.repo_digests[0].split('@')[1]}"},
                {"status": f"Status: Downloaded newer image for {reference}"},
            ]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            chunk = json.dumps(line).encode() + b"\r\n"
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _EngineServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, state: EngineState):
        self.state = state
        super().__init__(path, _EngineHandler)


class FakeDockerEngine:
    """The fake engine on `socket_path`; use as a context manager, or start()/stop()."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path
        self.state = EngineState()
        self._server: _EngineServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        with self.state.lock:
            return list(self.state.requests)

    def start(self) -> FakeDockerEngine:
        self._server = _EngineServer(str(self.socket_path), self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeDockerEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- building the state -----------------------------------------------------------

    def add_image(self, reference: str, digest: str, *, repository: str | None = None) -> str:
        """A local image tagged `reference`, pulled when the registry served `digest`.
        `repository` is the name its RepoDigest records (default: the reference's)."""
        repo = repository or reference.rsplit(":", 1)[0]
        image = FakeImage(
            f"sha256:{fake_id(reference + digest)}", [reference], [f"{repo}@{digest}"]
        )
        with self.state.lock:
            for other in self.state.images.values():
                if reference in other.repo_tags:
                    other.repo_tags.remove(reference)
            self.state.images[image.id] = image
        return image.id

    def add_built_image(self, reference: str) -> str:
        """An image built on this host: tagged, but with no RepoDigest."""
        image = FakeImage(f"sha256:{fake_id('built' + reference)}", [reference], [])
        with self.state.lock:
            self.state.images[image.id] = image
        return image.id

    def serve_on_pull(self, reference: str, digest: str) -> str:
        """What `docker pull reference` will fetch: a new image with `digest`."""
        repo = reference.rsplit(":", 1)[0]
        image = FakeImage(
            f"sha256:{fake_id('pulled' + reference + digest)}", [], [f"{repo}@{digest}"]
        )
        with self.state.lock:
            self.state.pullable[reference] = image
        return image.id

    def add_container(
        self,
        name: str,
        image: str,
        *,
        image_id: str | None = None,
        labels: dict[str, str] | None = None,
        running: bool = True,
    ) -> FakeContainer:
        """A container created from `image` (running the image tagged so now, unless
        `image_id` says which one)."""
        with self.state.lock:
            if image_id is None:
                found = self.state.find_image(image)
                image_id = found.id if found else f"sha256:{fake_id(image)}"
            container = FakeContainer(
                fake_id(name), name, image, image_id, dict(labels or {}), running
            )
            self.state.containers.append(container)
        return container

    def compose_labels(self, project: str, working_dir: Path, service: str) -> dict[str, str]:
        return {
            "com.docker.compose.project": project,
            "com.docker.compose.project.working_dir": str(working_dir),
            "com.docker.compose.project.config_files": str(working_dir / "compose.yaml"),
            "com.docker.compose.service": service,
        }
