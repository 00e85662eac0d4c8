"""Fixtures for trust tests: a real appliance, an admin API token, real agents."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.enrol import register
from agent.session import AgentSession
from appliance.domain.actors import Actor
from appliance.services import api_tokens, users
from appliance.services.keys import KeyService
from appliance.signers import KeyEncryptionKey
from appliance.store.database import Database
from kernel.protocol import HostFacts, SignedDocument, b64encode, canonical_json
from tests.man_in_the_middle import Middle
from tests.support import (
    InProcessAppliance,
    RunningAppliance,
    key_file_for,
    run_async,
    start_appliance,
    start_in_process,
)

_hosts = itertools.count(1)


def host_facts(hostname: str | None = None, fingerprint: str = "fp-original") -> HostFacts:
    return HostFacts(
        hostname=hostname or f"host-{next(_hosts)}",
        machine_fingerprint=fingerprint,
        os_family="debian",
        os_name="Debian GNU/Linux",
        os_version="12",
        kernel="6.1.0",
        arch="amd64",
        agent_version="0.1.0",
    )


class InjectingTransport(httpx.HTTPTransport):
    """A man in the middle on loopback: passes traffic to the real appliance and can
    add envelopes to, or replace the trust bundle of, check-in answers."""

    def __init__(self) -> None:
        super().__init__()
        self.extra_commands: list[dict[str, str]] = []
        self.replace_trust: dict[str, Any] | None = None
        self.last_checkin: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/agent/checkin") or response.status_code != 200:
            return response
        response.read()
        answer = json.loads(response.content)
        self.last_checkin = json.loads(response.content)
        answer["commands"] = answer["commands"] + self.extra_commands
        if self.replace_trust is not None:
            answer["trust"] = self.replace_trust
        self.extra_commands = []
        return httpx.Response(200, json=answer, headers={"Content-Type": "application/json"})


@dataclass
class Fleet:
    appliance: RunningAppliance | InProcessAppliance
    admin_token: str
    tmp_path: Path
    secrets: list[str] = field(default_factory=list)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.appliance.url,
            timeout=10,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def api(self, method: str, path: str, **options: Any) -> httpx.Response:
        with self.admin() as client:
            return client.request(method, f"/api/v1{path}", **options)

    def tokens(self) -> list[dict[str, Any]]:
        return self.api("GET", "/tokens").json()["tokens"]

    def registration_token(self, **options: Any) -> str:
        with self.admin() as client:
            response = client.post("/api/v1/tokens", json={"seats": 5, "expires": "1h", **options})
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        self.secrets.append(token.split(".")[0])
        return token

    def state_dir(self) -> Path:
        return self.tmp_path / f"agent-{next(_hosts)}"

    def enrol(
        self,
        facts: HostFacts | None = None,
        state_dir: Path | None = None,
        token: str | None = None,
    ) -> Path:
        directory = state_dir or self.state_dir()
        register(
            directory, self.appliance.url, token or self.registration_token(), facts or host_facts()
        )
        self.secrets.append((directory / "agent.key").read_text().strip())
        return directory

    def session(
        self,
        state_dir: Path,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> AgentSession:
        options: dict[str, Any] = {"transport": transport}
        if clock is not None:
            options["clock"] = clock
        return AgentSession(state_dir, **options)

    def command(self, agent_id: str, kind: str = "echo", **params: Any) -> dict[str, Any]:
        with self.admin() as client:
            response = client.post(
                f"/api/v1/agents/{agent_id}/commands", json={"kind": kind, "params": params}
            )
        assert response.status_code == 201, response.text
        return response.json()

    def db_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        conn = sqlite3.connect(self.appliance.data_dir / "redflag.db")
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def db_execute(self, sql: str, *params: Any) -> None:
        """A change made behind the appliance's back, as time or an attacker would."""
        import sqlite3

        conn = sqlite3.connect(self.appliance.data_dir / "redflag.db")
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()

    def stolen_signer(self, key_id: str | None = None) -> Any:
        """What a thief with the database AND the key file holds: the signing key."""

        async def steal() -> Any:
            db = await Database.open(self.appliance.data_dir / "redflag.db")
            try:
                keys = KeyService(db, KeyEncryptionKey.load(key_file_for(self.appliance.data_dir)))
                if key_id is None:
                    return await keys.current_signer()
                record = next(r for r in await keys.records() if r.key_id == key_id)
                return keys._signer_for(record)
            finally:
                await db.close()

        return run_async(steal())


def forge_envelope(
    signer: Any, claimed_key_id: str | None = None, **command: Any
) -> dict[str, str]:
    """An envelope signed by `signer` (a stolen or foreign key) that names
    `claimed_key_id` (default: the signer's own) as its key."""
    key_id = claimed_key_id or signer.key_id
    body = {"params": {}, "kind": "echo", "key_id": key_id, **command}
    document = canonical_json(body)
    return SignedDocument(document.decode(), key_id, b64encode(signer.sign(document))).to_json()


async def _make_admin(database: Path) -> str:
    db = await Database.open(database)
    try:
        await users.create_user(db, Actor("test"), "admin", "correct horse battery", "admin")
        return await api_tokens.create_api_token(db, Actor("test"), "admin", "tests")
    finally:
        await db.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The real appliance served from this process, an admin and its API token."""
    yield from _fleet(tmp_path, start_in_process(tmp_path / "data"))


@pytest.fixture
def fleet_process(tmp_path: Path) -> Iterator[Fleet]:
    """The same with the appliance as its own process, for tests that signal or kill it."""
    yield from _fleet(tmp_path, start_appliance(tmp_path / "data"))


def _fleet(tmp_path: Path, running: Any) -> Iterator[Fleet]:
    try:
        token = run_async(_make_admin(running.data_dir / "redflag.db"))
        master_key = key_file_for(running.data_dir).read_text().strip()
        fleet = Fleet(running, token, tmp_path, secrets=[token, master_key])
        yield fleet
        # No secret that passed through this test may appear in the appliance's log.
        log = fleet.appliance.log()
        for secret in fleet.secrets:
            assert secret not in log, "a secret reached the log"
    finally:
        running.stop()
        if "fleet" in locals():
            fleet.appliance.stop()


@pytest.fixture
def middle(fleet: Fleet) -> Iterator[Middle]:
    """A man in the middle on loopback in front of the fleet's appliance."""
    running = Middle(fleet.appliance.url).start()
    try:
        yield running
    finally:
        running.stop()
