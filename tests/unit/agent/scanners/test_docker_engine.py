"""The agent's Docker Engine client against the fake Engine on a unix socket, and what
it says when there is no Engine to talk to."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.scanners.docker_engine import (
    DockerEngine,
    DockerEngineUnavailable,
    EngineRefused,
    engine_url,
    engine_usable,
)
from tests.fakes.docker_engine import FakeDockerEngine

DIGEST = "sha256:" + "1" * 64


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    directory = Path(tempfile.mkdtemp(prefix="rf-engine-"))  # AF_UNIX paths are short
    with FakeDockerEngine(directory / "engine.sock") as running:
        yield running
    shutil.rmtree(directory, ignore_errors=True)


def test_running_containers_come_with_the_reference_they_were_created_from(
    engine: FakeDockerEngine,
) -> None:
    engine.add_image("nginx:1.27", DIGEST)
    engine.add_container("web", "nginx:1.27", labels={"team": "ops"})
    engine.add_container("old", "nginx:1.27", running=False)

    with DockerEngine(engine.base_url) as docker:
        [web] = docker.running_containers()

    assert (web.name, web.image, web.labels) == ("web", "nginx:1.27", {"team": "ops"})
    assert web.image_id.startswith("sha256:")
    paths = [path for _, path, _ in engine.requests]
    assert paths[0] == "/version"  # the API version is the Engine's own
    assert all(p.startswith("/v1.45/") for p in paths[1:])


def test_an_image_is_inspected_by_reference_or_id_and_an_absent_one_is_none(
    engine: FakeDockerEngine,
) -> None:
    image_id = engine.add_image("registry.test/team/app:1.0", DIGEST)
    with DockerEngine(engine.base_url) as docker:
        assert docker.image("registry.test/team/app:1.0")["Id"] == image_id
        assert docker.image(image_id)["RepoDigests"] == [f"registry.test/team/app@{DIGEST}"]
        assert docker.image("absent:1") is None


def test_a_pull_streams_its_progress_and_sends_the_credentials(engine: FakeDockerEngine) -> None:
    engine.serve_on_pull("nginx:1.27", DIGEST)
    progress: list[dict[str, Any]] = []
    with DockerEngine(engine.base_url) as docker:
        docker.pull("nginx", "1.27", {"username": "u", "password": "p"}, progress.append)

    assert progress[0]["status"] == "Pulling from nginx"
    assert progress[-1]["status"] == "Status: Downloaded newer image for nginx:1.27"
    [(_, _, headers)] = [r for r in engine.requests if r[0] == "POST"]
    assert json.loads(base64.urlsafe_b64decode(headers["X-Registry-Auth"])) == {
        "username": "u",
        "password": "p",
    }


def test_a_pull_the_engine_refuses_carries_the_engines_message(engine: FakeDockerEngine) -> None:
    with DockerEngine(engine.base_url) as docker, pytest.raises(EngineRefused) as refused:
        docker.pull("nginx", "9.99", {}, lambda line: None)
    assert refused.value.status == 404
    assert str(refused.value) == "manifest for nginx:9.99 not found"


def test_no_engine_at_all_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(DockerEngineUnavailable) as missing:
        DockerEngine(f"unix://{tmp_path}/docker.sock")
    assert str(missing.value) == f"Docker Engine at unix://{tmp_path}/docker.sock: no such socket"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DockerEngineUnavailable) as refused:
        DockerEngine(f"tcp://127.0.0.1:{port}")
    assert str(refused.value) == (
        f"Docker Engine at tcp://127.0.0.1:{port}: connection refused by http://127.0.0.1:{port}"
    )

    with pytest.raises(DockerEngineUnavailable, match="only unix:// and tcp://"):
        DockerEngine("ssh://user@host")


def test_the_engine_comes_from_docker_host_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine_url(None) == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert engine_url(None) == "tcp://10.0.0.2:2375"
    assert engine_url("unix:///run/podman/podman.sock") == "unix:///run/podman/podman.sock"


def test_an_engine_socket_is_usable_only_when_it_exists(
    engine: FakeDockerEngine, tmp_path: Path
) -> None:
    assert engine_usable(engine.base_url)
    assert not engine_usable(f"unix://{tmp_path}/absent.sock")
    assert engine_usable("tcp://10.0.0.2:2375")  # only a connection can tell
