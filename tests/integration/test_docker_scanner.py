"""The Docker scanner and installer against a fake Engine on a unix socket and a fake
registry on loopback, both speaking the real protocols: the agent's real Engine and
registry clients run, and a fake `docker` first on PATH records Compose calls."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.breaker import CircuitBreaker
from agent.scanners.docker import DockerEngineUnavailable, DockerInstaller, DockerScanner
from agent.scanners.docker_registry import (
    MANIFEST_TYPES,
    InvalidImageReference,
    RegistryUnavailable,
)
from kernel.protocol import UpdateRecord
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.registry import FakeRegistry

pytestmark = pytest.mark.slow

OLD = "sha256:" + "0" * 64
APP = "registry.test/team/app"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeDockerEngine]:
    socket_dir = tmp_path
    if len(str(tmp_path / "engine.sock")) > 100:  # AF_UNIX paths are short
        socket_dir = Path(tempfile.mkdtemp(prefix="rf-docker-"))
    with FakeDockerEngine(socket_dir / "engine.sock") as running:
        yield running
    if socket_dir != tmp_path:
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry(service="registry.test") as running:
        yield running


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    return tmp_path / "docker-config.json"


def scanner_for(engine: FakeDockerEngine, docker_config: Path, **urls: str) -> DockerScanner:
    return DockerScanner(
        engine.base_url,
        registry_urls={host.replace("_", "."): url for host, url in urls.items()},
        docker_config=docker_config,
        timeout_s=5,
    )


def scan_behind(breaker: CircuitBreaker, scanner: DockerScanner) -> list[dict[str, Any]] | None:
    """What the daemon does with a scanner: ask the breaker, scan, record the outcome."""
    if not breaker.allow():
        return None
    try:
        updates = scanner.scan()
    except Exception as exc:
        breaker.record_failure(f"{type(exc).__name__}: {exc}")
        return None
    breaker.record_success()
    return updates


# --- scanning -------------------------------------------------------------------------


def test_an_image_whose_digest_matches_the_registry_is_not_reported(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    current = registry.put_manifest("team/app", "1.0")
    engine.add_image(f"{APP}:1.0", current)
    engine.add_container("app", f"{APP}:1.0")

    scanner = scanner_for(engine, docker_config, registry_test=registry.url)

    assert scanner.scan() == []
    assert scanner.last_report["errors"] == []


def test_a_moved_tag_is_one_update_naming_its_containers_and_compose_project(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path, tmp_path: Path
) -> None:
    new = registry.put_manifest("team/app", "1.0", content="rebuilt")
    engine.add_image(f"{APP}:1.0", OLD)
    labels = engine.compose_labels("shop", tmp_path / "shop", "web")
    engine.add_container("shop-web-1", f"{APP}:1.0", labels=labels)
    engine.add_container("shop-web-2", f"{APP}:1.0", labels=labels)
    engine.add_container("stopped", f"{APP}:1.0", running=False)

    [update] = scanner_for(engine, docker_config, registry_test=registry.url).scan()

    assert UpdateRecord.from_json(update).to_json() == update
    assert update["source"] == "docker"
    assert update["package"] == f"{APP}:1.0"  # one update per tag
    assert update["current_version"] == OLD
    assert update["available_version"] == new
    assert update["origin"] == "registry.test"
    details = update["details"]
    assert details["image"] == f"{APP}:1.0"
    assert details["tag"] == "1.0"
    assert details["containers"] == ["shop-web-1", "shop-web-2"]
    assert details["compose_project"] == "shop"
    assert details["compose_dir"] == str(tmp_path / "shop")


def test_docker_hub_names_are_looked_up_as_library_repositories_with_every_manifest_type(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    registry.put_manifest("library/nginx", "1.27")
    engine.add_image("nginx:1.27", OLD)
    engine.add_container("proxy", "nginx:1.27")

    [update] = scanner_for(engine, docker_config, docker_io=registry.url).scan()

    assert update["package"] == "nginx:1.27"
    assert update["details"]["image"] == "nginx:1.27"
    [(method, path, headers)] = registry.requests
    assert (method, path) == ("HEAD", "/v2/library/nginx/manifests/1.27")
    assert all(media_type in headers["Accept"] for media_type in MANIFEST_TYPES)


def test_a_registry_that_omits_the_digest_header_on_head_is_asked_for_the_manifest(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    current = registry.put_manifest("team/app", "1.0")
    registry.state.send_digest_on_head = False
    engine.add_image(f"{APP}:1.0", current)
    engine.add_container("app", f"{APP}:1.0")

    assert scanner_for(engine, docker_config, registry_test=registry.url).scan() == []
    assert [r[0] for r in registry.requests] == ["HEAD", "GET"]


def test_the_bearer_challenge_is_followed_to_the_token_service_and_back(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    new = registry.put_manifest("team/app", "1.0")
    registry.require_token()
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("app", f"{APP}:1.0")

    [update] = scanner_for(engine, docker_config, registry_test=registry.url).scan()

    assert update["available_version"] == new
    first, token, retry = registry.requests
    assert "Authorization" not in first[2]
    assert token[1].startswith("/token?")
    assert "scope=repository%3Ateam%2Fapp%3Apull" in token[1]
    assert "service=registry.test" in token[1]
    assert retry[2]["Authorization"].startswith("Bearer ")


def test_credentials_from_the_docker_config_are_used_when_the_token_service_wants_them(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    new = registry.put_manifest("team/app", "1.0")
    registry.require_token(credentials=("alice", "s3cret"))
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("app", f"{APP}:1.0")
    scanner = scanner_for(engine, docker_config, registry_test=registry.url)

    with pytest.raises(RegistryUnavailable, match="token service wants credentials"):
        scanner.scan()

    auth = base64.b64encode(b"alice:s3cret").decode()
    docker_config.write_text(json.dumps({"auths": {"registry.test": {"auth": auth}}}))
    [update] = scanner.scan()

    assert update["available_version"] == new
    token_request = [r for r in registry.requests if r[1].startswith("/token")][-1]
    assert token_request[2]["Authorization"] == f"Basic {auth}"


def test_wrong_credentials_are_a_registry_error(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    registry.put_manifest("team/app", "1.0")
    registry.require_token(credentials=("alice", "s3cret"))
    wrong = base64.b64encode(b"alice:guess").decode()
    docker_config.write_text(json.dumps({"auths": {"https://registry.test": {"auth": wrong}}}))
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("app", f"{APP}:1.0")

    with pytest.raises(RegistryUnavailable, match="refused the credentials"):
        scanner_for(engine, docker_config, registry_test=registry.url).scan()


@pytest.mark.parametrize("outage", ["503", "close", "stopped"])
def test_a_registry_that_is_down_fails_the_scan_and_opens_the_breaker_after_two_scans(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path, outage: str
) -> None:
    registry.put_manifest("team/app", "1.0")
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("app", f"{APP}:1.0")
    scanner = scanner_for(engine, docker_config, registry_test=registry.url)
    breaker = CircuitBreaker("docker", failure_threshold=2, clock=lambda: 0.0)
    if outage == "stopped":
        registry.stop()
    else:
        registry.go_down(outage)

    with pytest.raises(RegistryUnavailable, match="all 1 registry lookups failed"):
        scanner.scan()
    assert [e["image"] for e in scanner.last_report["errors"]] == [f"{APP}:1.0"]
    assert scan_behind(breaker, scanner) is None
    assert breaker.state == "closed"
    assert scan_behind(breaker, scanner) is None

    assert breaker.state == "open"
    assert "RegistryUnavailable" in (breaker.last_error or "")
    assert not breaker.allow()


def test_one_registry_failing_does_not_hide_the_updates_from_another(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    new = registry.put_manifest("team/app", "1.0")
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("app", f"{APP}:1.0")
    engine.add_image("other.test/db:16", OLD)
    engine.add_container("db", "other.test/db:16")
    with FakeRegistry(service="other.test") as other:
        other.go_down("503")
        scanner = scanner_for(
            engine, docker_config, registry_test=registry.url, other_test=other.url
        )

        [update] = scanner.scan()

    assert update["available_version"] == new
    [error] = scanner.last_report["errors"]
    assert error["image"] == "other.test/db:16"
    assert "HTTP 503" in error["error"]


def test_images_pinned_by_digest_or_built_here_are_skipped_and_said_so(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path
) -> None:
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container("pinned", f"{APP}@{OLD}", image_id=engine.add_image(f"{APP}:0.9", OLD))
    engine.add_built_image("registry.test/team/local:dev")
    engine.add_container("local", "registry.test/team/local:dev")
    scanner = scanner_for(engine, docker_config, registry_test=registry.url)

    assert scanner.scan() == []

    reasons = {s["container"]: s["reason"] for s in scanner.last_report["skipped"]}
    assert reasons["pinned"] == "pinned by digest"
    assert "no registry digest locally" in reasons["local"]
    assert registry.requests == []


@pytest.mark.parametrize("image", ["foo;rm -rf /", "../x", "-v", "app:1.0 --privileged"])
def test_a_malicious_image_name_from_the_engine_is_skipped_without_any_lookup(
    engine: FakeDockerEngine, registry: FakeRegistry, docker_config: Path, image: str
) -> None:
    engine.add_container("evil", image, image_id="sha256:" + "e" * 64)
    scanner = scanner_for(engine, docker_config, registry_test=registry.url)

    assert scanner.scan() == []

    [skipped] = scanner.last_report["skipped"]
    assert skipped["container"] == "evil"
    assert "not a valid" in skipped["reason"]
    assert registry.requests == []


def test_an_engine_that_does_not_answer_fails_the_scan(tmp_path: Path) -> None:
    scanner = DockerScanner(f"unix://{tmp_path}/absent.sock")

    assert not scanner.available()
    with pytest.raises(DockerEngineUnavailable):
        scanner.scan()


# --- installing ---------------------------------------------------------------------


@pytest.fixture
def docker_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `docker` first on PATH: records argv, cwd and DOCKER_HOST, one JSON a line;
    exits with the number in exit-code if that file exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker-calls.jsonl"
    script = bin_dir / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, pathlib, sys\n"
        f"log = pathlib.Path({str(log)!r})\n"
        "call = {'argv': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'docker_host': os.environ.get('DOCKER_HOST')}\n"
        "with log.open('a') as f:\n"
        "    f.write(json.dumps(call) + '\\n')\n"
        "print('Container shop-web-1  Recreated')\n"
        "print('Container shop-web-1  Started', file=sys.stderr)\n"
        "code = log.parent / 'exit-code'\n"
        "sys.exit(int(code.read_text()) if code.exists() else 0)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return log


def docker_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def shop(engine: FakeDockerEngine, tmp_path: Path) -> Path:
    """A Compose project "shop" whose web service runs APP:1.0, a plain container on the
    same image, and a newer APP:1.0 waiting in the registry."""
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text(f"services:\n  web:\n    image: {APP}:1.0\n")
    engine.add_image(f"{APP}:1.0", OLD)
    engine.add_container(
        "shop-web-1", f"{APP}:1.0", labels=engine.compose_labels("shop", project, "web")
    )
    engine.add_container("standalone", f"{APP}:1.0")
    engine.serve_on_pull(f"{APP}:1.0", "sha256:" + "1" * 64)
    return project


def test_install_pulls_recreates_the_compose_service_and_reports_the_plain_container(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    output: list[str] = []
    installer = DockerInstaller(engine.base_url, docker_config=docker_config)

    result = installer.install([f"{APP}:1.0"], output.append).to_json()

    pulls = [r for r in engine.requests if r[1].startswith("/v1.45/images/create")]
    assert len(pulls) == 1
    assert "fromImage=registry.test%2Fteam%2Fapp" in pulls[0][1]
    assert "tag=1.0" in pulls[0][1]
    [call] = docker_calls(docker_cli)
    assert call["argv"] == [
        "compose",
        "-p",
        "shop",
        "-f",
        str(shop / "compose.yaml"),
        "up",
        "-d",
        "--no-deps",
        "web",
    ]
    assert call["cwd"] == str(shop)
    assert call["docker_host"] == engine.base_url
    assert result["installed"] == [
        {
            "package": APP,
            "image": f"{APP}:1.0",
            "from": OLD,
            "to": "sha256:" + "1" * 64,
            "status": "pulled, restart needed",
        }
    ]
    assert result["failed"] == []
    assert "error" not in result
    [image] = result["images"]
    assert image["status"] == "pulled, restart needed"
    assert image["digest"] == "sha256:" + "1" * 64
    assert image["recreated"] == [
        {"project": "shop", "services": ["web"], "containers": ["shop-web-1"], "exit_code": 0}
    ]
    assert image["restart_needed"] == [
        {"container": "standalone", "reason": "not managed by Compose"}
    ]
    assert f"pulling {APP}:1.0" in output
    assert "Container shop-web-1  Recreated" in output
    assert not any("Downloading" in line for line in output)


def test_dry_run_shows_the_pull_the_recreation_and_the_manual_restart_and_changes_nothing(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    plan = (
        DockerInstaller(engine.base_url, docker_config=docker_config)
        .dry_run([f"{APP}:1.0"])
        .to_json()
    )

    [image] = plan["images"]
    assert image["pull"] == f"{APP}:1.0"
    [recreate] = image["recreate"]
    assert recreate["project"] == "shop"
    assert recreate["working_dir"] == str(shop)
    assert recreate["containers"] == ["shop-web-1"]
    assert recreate["command"][1:] == [
        "compose",
        "-p",
        "shop",
        "-f",
        str(shop / "compose.yaml"),
        "up",
        "-d",
        "--no-deps",
        "web",
    ]
    assert image["restart_needed"] == [
        {"container": "standalone", "reason": "not managed by Compose"}
    ]
    assert not [r for r in engine.requests if r[0] == "POST"]
    assert docker_calls(docker_cli) == []


def test_a_failing_compose_makes_the_install_fail(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    (docker_cli.parent / "exit-code").write_text("1")

    result = (
        DockerInstaller(engine.base_url, docker_config=docker_config)
        .install([f"{APP}:1.0"], lambda line: None)
        .to_json()
    )

    assert result["installed"] == []
    assert result["failed"] == [f"{APP}:1.0"]
    assert "docker compose failed for shop" in result["error"]


def test_a_failed_pull_is_reported_and_nothing_is_recreated(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    engine.state.pull_error = "toomanyrequests: rate limit reached"

    result = (
        DockerInstaller(engine.base_url, docker_config=docker_config)
        .install([f"{APP}:1.0"], lambda line: None)
        .to_json()
    )

    assert result["failed"] == [f"{APP}:1.0"]
    assert "toomanyrequests" in result["error"]
    assert docker_calls(docker_cli) == []


def test_the_update_stays_reported_until_the_containers_run_the_new_image(
    engine: FakeDockerEngine,
    registry: FakeRegistry,
    docker_cli: Path,
    docker_config: Path,
    shop: Path,
) -> None:
    new = registry.put_manifest("team/app", "1.0")
    engine.serve_on_pull(f"{APP}:1.0", new)
    scanner = scanner_for(engine, docker_config, registry_test=registry.url)
    DockerInstaller(engine.base_url, docker_config=docker_config).install(
        [f"{APP}:1.0"], lambda line: None
    )

    [update] = scanner.scan()  # the fake compose recreated nothing

    assert update["current_version"] == OLD
    assert update["details"]["containers"] == ["shop-web-1", "standalone"]


def test_a_repository_name_without_tag_updates_every_tag_that_running_containers_use(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    engine.add_image(f"{APP}:2.0", OLD)
    engine.add_container("canary", f"{APP}:2.0")
    engine.serve_on_pull(f"{APP}:2.0", "sha256:" + "2" * 64)
    installer = DockerInstaller(engine.base_url, docker_config=docker_config)

    plan = installer.dry_run([APP, "registry.test/team/unused"]).to_json()
    result = installer.install([APP], lambda line: None).to_json()

    assert [i["image"] for i in plan["images"]] == [f"{APP}:1.0", f"{APP}:2.0"]
    assert plan["not_in_use"] == ["registry.test/team/unused"]
    assert [(i["image"], i["to"]) for i in result["installed"]] == [
        (f"{APP}:1.0", "sha256:" + "1" * 64),
        (f"{APP}:2.0", "sha256:" + "2" * 64),
    ]


def test_registry_credentials_from_the_docker_config_go_with_the_pull(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path
) -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    docker_config.write_text(json.dumps({"auths": {"registry.test": {"auth": auth}}}))

    DockerInstaller(engine.base_url, docker_config=docker_config).install(
        [f"{APP}:1.0"], lambda line: None
    )

    [pull] = [r for r in engine.requests if r[0] == "POST"]
    sent = json.loads(base64.urlsafe_b64decode(pull[2]["X-Registry-Auth"]))
    assert sent == {"username": "alice", "password": "s3cret", "serveraddress": "registry.test"}


@pytest.mark.parametrize(
    "image", ["foo;rm -rf /", "../x", "-v", "nginx:1.27 -v", "nginx\n", f"nginx@{OLD}", "NGINX:1"]
)
def test_a_malicious_image_name_is_refused_before_anything_runs(
    engine: FakeDockerEngine, docker_cli: Path, docker_config: Path, shop: Path, image: str
) -> None:
    installer = DockerInstaller(engine.base_url, docker_config=docker_config)

    with pytest.raises(InvalidImageReference):
        installer.install([f"{APP}:1.0", image], lambda line: None)
    with pytest.raises(InvalidImageReference):
        installer.dry_run([image])

    assert engine.requests == []
    assert docker_calls(docker_cli) == []
