"""A fake container registry on 127.0.0.1: the Registry v2 API (`/v2/`, manifest HEAD
and GET with Docker-Content-Digest), a token service with the Bearer challenge (which
may require basic credentials), and a switch to go down.

    with FakeRegistry(service="registry.test") as registry:
        digest = registry.put_manifest("library/nginx", "1.27")
        registry.require_token(credentials=("alice", "s3cret"))
        registry.go_down("503")
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")


@dataclass
class RegistryState:
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    token_required: bool = False
    credentials: tuple[str, str] | None = None  # basic auth the token service demands
    tokens: dict[str, str] = field(default_factory=dict)  # token -> scope
    down: str | None = None  # None, "503" or "close"
    send_digest_on_head: bool = True
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeRegistry/2"
    timeout = 5
    server: _RegistryServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers.items())))
            down = state.down
        if down == "close":
            self.close_connection = True
            return  # no answer at all: the client sees the connection drop
        if down == "503":
            return self._send(503, {"errors": [{"code": "UNAVAILABLE"}]}, {"Retry-After": "30"})
        if url.path == "/token":
            return self._token({k: v[-1] for k, v in parse_qs(url.query).items()})
        if url.path == "/v2/":
            if not self._authorised(None):
                return self._challenge(None)
            return self._send(200, {})
        match = _MANIFEST.match(url.path)
        if match is None:
            return self._send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        name, reference = match["name"], match["reference"]
        if not self._authorised(name):
            return self._challenge(name)
        with state.lock:
            found = state.manifests.get((name, reference))
            with_digest = state.send_digest_on_head or self.command == "GET"
        accepted = self.headers.get("Accept", "")
        if found is None or found[0] not in accepted:
            return self._send(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        media_type, body = found
        headers = {"Content-Type": media_type}
        if with_digest:
            headers["Docker-Content-Digest"] = "sha256:" + hashlib.sha256(body).hexdigest()
        self._send_raw(200, body, headers)

    def _authorised(self, name: str | None) -> bool:
        state = self.server.state
        if not state.token_required:
            return True
        given = self.headers.get("Authorization", "")
        with state.lock:
            scope = state.tokens.get(given.removeprefix("Bearer ")) if given else None
        return scope is not None and (name is None or scope == f"repository:{name}:pull")

    def _challenge(self, name: str | None) -> None:
        host, port = self.server.server_address[:2]
        challenge = f'Bearer realm="http://{host}:{port}/token",service="{self.server.service}"'
        if name is not None:
            challenge += f',scope="repository:{name}:pull"'
        self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})

    def _token(self, query: dict[str, str]) -> None:
        state = self.server.state
        if state.credentials is not None:
            expected = base64.b64encode(":".join(state.credentials).encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                return self._send(401, {"details": "incorrect username or password"})
        if query.get("service") != self.server.service or not query.get("scope"):
            return self._send(400, {"details": "service and scope required"})
        token = secrets.token_urlsafe(16)
        with state.lock:
            state.tokens[token] = query["scope"]
        self._send(200, {"token": token, "access_token": token, "expires_in": 300})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(
            status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _send_raw(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _RegistryServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, state: RegistryState, service: str):
        self.state = state
        self.service = service
        super().__init__(("127.0.0.1", 0), _RegistryHandler)


class FakeRegistry:
    """A registry on a free loopback port; `url` is its base URL."""

    def __init__(self, service: str = "registry.test"):
        self.service = service
        self.state = RegistryState()
        self._server: _RegistryServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> FakeRegistry:
        self._server = _RegistryServer(self.state, self.service)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        with self.state.lock:
            return list(self.state.requests)

    def put_manifest(
        self, name: str, tag: str, *, media_type: str = OCI_INDEX, content: str = ""
    ) -> str:
        """Serve a manifest for name:tag; returns its digest ("sha256:...")."""
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": media_type, "content": content or f"{name}:{tag}"}
        ).encode()
        with self.state.lock:
            self.state.manifests[(name, tag)] = (media_type, body)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def require_token(self, credentials: tuple[str, str] | None = None) -> None:
        """Answer 401 with a Bearer challenge until a token from /token is presented;
        with `credentials`, the token service wants them as basic auth."""
        with self.state.lock:
            self.state.token_required = True
            self.state.credentials = credentials

    def go_down(self, how: str = "503") -> None:
        """ "503": answer every request 503; "close": drop every connection unanswered."""
        if how not in ("503", "close"):
            raise ValueError("how: '503' or 'close'")
        with self.state.lock:
            self.state.down = how

    def come_back(self) -> None:
        with self.state.lock:
            self.state.down = None
