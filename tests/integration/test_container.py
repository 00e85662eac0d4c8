"""The appliance's container image with the real Docker engine (tests/docker_engine.py):
built by packaging/build-image.sh without network on a Debian 12 base made here, run
as packaging/compose.yaml says, an agent on this host registered against it, the
container replaced; an older data volume migrated after a snapshot, and rolled back.

Containers use host networking (the private engine makes no bridge): the appliance
listens on a free loopback port instead of the published 8080."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from appliance.store.migrations import load_migrations, migrate
from tests.docker_engine import Engine, debian_base_image, running_engine
from tests.integration.test_agent_runtime import NO_BUILTIN_SCANNERS, agent_process
from tests.support import REPO, free_port, wait_for

# The first test also waits for the module's image: a Debian root (once per machine),
# the wheelhouse and the build take minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

COMPOSE = yaml.safe_load((REPO / "packaging" / "compose.yaml").read_text())
SERVICE = COMPOSE["services"]["appliance"]
IMAGE = SERVICE["image"]
APPLIANCE_UID = 10001  # the image's user (packaging/Dockerfile)
STOP_DEADLINE_S = 5
HEAD = len(load_migrations())
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with running_engine() as running:
        yield running


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image built as docs/install.md says, from a base made without a registry."""
    base = debian_base_image(engine)
    built = subprocess.run(
        [
            str(REPO / "packaging" / "build-image.sh"),
            "--base-image",
            base,
            "--tag",
            IMAGE.split(":")[0],
            "--wheelhouse",
            str(tmp_path_factory.mktemp("wheelhouse")),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**engine.env, "PYTHON": sys.executable},
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return IMAGE


def on_loopback(port: int) -> list[str]:
    """Host networking, the appliance on loopback `port` (the published port's place)."""
    return ["--network", "host", "--env", "REDFLAG_HOST=127.0.0.1", "--env", f"REDFLAG_PORT={port}"]


def container_args(port: int) -> list[str]:
    """`docker run` options for the service: on loopback, everything else as the compose
    file gives it."""
    args = [*on_loopback(port), "--restart", SERVICE["restart"]]
    for name, value in SERVICE["environment"].items():
        args += ["--env", f"{name}={value}"]
    health = SERVICE["healthcheck"]
    for option in ("interval", "timeout", "start_period", "retries"):
        args.append(f"--health-{option.replace('_', '-')}={health[option]}")
    return args


def compose_mounts(data_volume: str, secrets_dir: Path) -> list[str]:
    """The compose file's named volume and file secret, as compose mounts them (a file
    secret is a read-only bind mount at /run/secrets/NAME, owner and mode unchanged)."""
    args = []
    for volume in SERVICE["volumes"]:
        name, target = volume.split(":")
        assert name in COMPOSE["volumes"]
        args += ["--volume", f"{data_volume}:{target}"]
    for secret in SERVICE["secrets"]:
        source = secrets_dir / Path(COMPOSE["secrets"][secret]["file"]).name
        args += ["--volume", f"{source}:/run/secrets/{secret}:ro"]
    return args


def make_key_file(secrets_dir: Path) -> Path:
    """The key file as the compose file's comment says to make it."""
    secrets_dir.mkdir(exist_ok=True)
    key_file = secrets_dir / Path(COMPOSE["secrets"]["redflag_master_key"]["file"]).name
    key_file.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    key_file.chmod(0o600)
    os.chown(key_file, APPLIANCE_UID, APPLIANCE_UID)
    return key_file


def health(engine: Engine, name: str) -> str:
    return engine("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()


def wait_healthy(engine: Engine, name: str, deadline_s: float = 60) -> float:
    """Seconds until Docker's own health check says healthy."""
    started = time.monotonic()
    end = started + deadline_s
    while time.monotonic() < end:
        status = health(engine, name)
        if status == "healthy":
            return time.monotonic() - started
        state = engine("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state in ("exited", "dead"):
            break
        time.sleep(0.5)
    logs = engine("logs", name, check=False)
    raise AssertionError(f"{name} is not healthy ({status}):\n{logs.stdout}{logs.stderr}")


def stop_timed(engine: Engine, name: str) -> float:
    """Seconds `docker stop` takes; a grace period far above the deadline, so that a
    SIGKILL cannot hide a missed SIGTERM."""
    started = time.monotonic()
    engine("stop", "--time", "30", name, timeout=60)
    elapsed = time.monotonic() - started
    state = json.loads(engine("inspect", "--format", "{{json .State}}", name).stdout)
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
    return elapsed


def in_container(engine: Engine, name: str, *args: str) -> str:
    """What `redflag-appliance ARGS` prints, run in the container as docs/install.md
    shows (`docker compose exec appliance redflag-appliance ...`)."""
    return engine("exec", name, "redflag-appliance", *args).stdout


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def enrol_agent(url: str, token: str, state_dir: Path) -> str:
    register = ["register", "--state-dir", str(state_dir), "--server", url, "--token", token]
    registered = subprocess.run(
        [sys.executable, "-m", "agent", *register],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    # Back within two seconds once the appliance is there again; no scan of this host.
    (state_dir / "agent.toml").write_text(
        "backoff_base_s = 0.2\nbackoff_max_s = 2\nrequest_timeout_s = 3\n" + NO_BUILTIN_SCANNERS
    )
    status = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(status.stdout)["agent_id"]


def setup_wizard(browser: httpx.Client) -> str:
    """The first start as docs/install.md tells it: the wizard in the browser creates the
    admin (and logs them in) and the first registration token, which it returns."""
    form = browser.get("/setup")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text
    fields = {"csrf_token": csrf.group(1), "username": "admin"}
    done = browser.post("/setup", data=fields | {"password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 200, done.text
    token = re.search(r"--token (\S+)", html.unescape(done.text))
    assert token, done.text
    return token.group(1)


def api(url: str, token: str, method: str, path: str, **options: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{url}/api/v1{path}", headers=headers, timeout=10, **options)


def echo_succeeds(url: str, token: str, agent_id: str) -> None:
    """A command signed by the appliance reaches the agent and comes back done."""
    sent = api(url, token, "POST", f"/agents/{agent_id}/commands", json={"kind": "echo"})
    assert sent.status_code == 201, sent.text

    def status() -> bool:
        listed = api(url, token, "GET", f"/agents/{agent_id}/commands").json()["commands"]
        return next(c for c in listed if c["id"] == sent.json()["id"])["status"] == "succeeded"

    wait_for(status, 30, "the echo command to succeed")


def test_an_agent_and_its_data_outlive_the_replacement_of_the_container(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    make_key_file(tmp_path / "secrets")
    volume = engine("volume", "create", "redflag-compose-data").stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run = ["run", "--detach", *container_args(port), *compose_mounts(volume, tmp_path / "secrets")]

    engine(*run, "--name", "redflag-1", image)
    wait_healthy(engine, "redflag-1")
    assert engine("exec", "redflag-1", "id", "-u").stdout.strip() == str(APPLIANCE_UID)
    with httpx.Client(base_url=url, timeout=30) as browser:
        registration_token = setup_wizard(browser)
        restore = browser.get("/admin/backups").text.split('id="restore-steps">')[1]
        assert "docker compose run --rm appliance restore /data/backups/FILE.db" in restore
    api_token = in_container(
        engine, "redflag-1", "api-token", "create", "--user", "admin", "--name", "test"
    ).strip()
    agent_id = enrol_agent(url, registration_token, tmp_path / "agent")

    with agent_process(tmp_path / "agent") as agent:
        wait_for(lambda: metric(url, "redflag_held_checkins") == 1, 30, "a held check-in")
        # A backup taken in the container, copied out as docs/install.md says.
        backup = in_container(engine, "redflag-1", "backup").strip().splitlines()[-1]
        engine("cp", f"redflag-1:{backup}", str(tmp_path / "backup.db"))
        with contextlib.closing(sqlite3.connect(tmp_path / "backup.db")) as copy:
            assert copy.execute("SELECT id FROM agents").fetchall() == [(agent_id,)]

        # The check-in is still held: the stop answers it and ends within the deadline.
        assert metric(url, "redflag_held_checkins") == 1
        assert stop_timed(engine, "redflag-1") < STOP_DEADLINE_S
        engine("rm", "redflag-1")

        engine(*run, "--name", "redflag-2", image)
        wait_healthy(engine, "redflag-2")
        agents = api(url, api_token, "GET", "/agents")
        assert agents.status_code == 200, agents.text  # the API token is still there
        assert [a["id"] for a in agents.json()["agents"]] == [agent_id]
        wait_for(lambda: metric(url, "redflag_held_checkins") == 1, 30, "the agent back")
        echo_succeeds(url, api_token, agent_id)
        assert agent.poll() is None
        assert stop_timed(engine, "redflag-2") < STOP_DEADLINE_S


def test_a_new_image_on_an_older_data_volume_migrates_after_a_snapshot_and_can_roll_back(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    # The data volume of the release before the newest migration, and no key file yet:
    # `docker run` with the image's own places, the key in a volume of its own.
    older = tmp_path / "redflag.db"
    migrate(older, tmp_path / "backups", load_migrations()[:-1])
    volumes = ["--volume", "redflag-old-data:/data", "--volume", "redflag-old-key:/etc/redflag"]
    engine(
        "run", "--rm", "--interactive", *volumes, "--entrypoint", "python3", image, "-c",
        "import os, shutil, sys\n"
        "fd = os.open('/data/redflag.db', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
        "shutil.copyfileobj(sys.stdin.buffer, os.fdopen(fd, 'wb'))",
        input_bytes=older.read_bytes(),
    )  # fmt: skip
    port = free_port()
    engine("run", "--detach", "--name", "redflag-old", *on_loopback(port), *volumes, image)
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}"), 60, "the upgraded appliance")

    log = engine("logs", "redflag-old").stdout + engine("logs", "redflag-old").stderr
    migrated = json.loads(next(line for line in log.splitlines() if "schema.migrated" in line))
    snapshot = migrated["snapshot"]
    expected = rf"/data/backups/pre-migrate-{HEAD - 1}-to-{HEAD}-\d{{8}}T\d{{6}}Z\.db"
    assert re.fullmatch(expected, snapshot), snapshot
    assert _schema_version(engine, "redflag-old", snapshot) == HEAD - 1
    key = engine("exec", "redflag-old", "stat", "-c", "%u %a", "/etc/redflag/master.key")
    assert key.stdout.split() == [str(APPLIANCE_UID), "600"]
    assert "master.key" not in engine("exec", "redflag-old", "ls", "-R", "/data").stdout

    # Rolling back: stop, restore the snapshot from a one-off container, start again.
    assert stop_timed(engine, "redflag-old") < STOP_DEADLINE_S
    engine("run", "--rm", *volumes, image, "restore", snapshot, "--yes")
    status = engine("run", "--rm", *volumes, image, "migrate", "--status").stdout
    assert f"schema version {HEAD - 1}" in status, status
    engine("start", "redflag-old")
    # Ready means the schema is current again: migrated anew, after another snapshot.
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}"), 60, "the appliance after the restore")
    again = engine("exec", "redflag-old", "ls", "/data/backups").stdout
    assert len(re.findall(rf"pre-migrate-{HEAD - 1}-to-{HEAD}-", again)) == 2, again
    assert stop_timed(engine, "redflag-old") < STOP_DEADLINE_S


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _schema_version(engine: Engine, name: str, database: str) -> int:
    """The schema version of a database in the container, read there."""
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)\n"
        "assert conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'\n"
        "print(conn.execute('SELECT max(version) FROM schema_migrations').fetchone()[0])"
    )
    return int(engine("exec", name, "python3", "-c", script, database).stdout)
