"""Registration: tokens with seats, expiry and revocation; no trust on first use."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.client import ApplianceError
from agent.enrol import Identity, SeatsUsedUp, TokenRefused, register
from agent.trust import TrustError
from tests.integration.conftest import Fleet, host_facts
from tests.support import key_file_for, run_cli

pytestmark = pytest.mark.slow


def test_registering_takes_a_seat_and_registering_again_is_idempotent(fleet: Fleet) -> None:
    token = fleet.registration_token(seats=2)
    state_dir = fleet.enrol(token=token)
    identity = Identity.load(state_dir)
    assert identity is not None
    assert fleet.tokens()[0]["seats_used"] == 1 and fleet.tokens()[0]["state"] == "active"

    again, created, _ = register(state_dir, fleet.appliance.url, token, host_facts())
    assert not created and again.agent_id == identity.agent_id
    assert fleet.db_rows("SELECT count(*) FROM agents") == [(1,)]
    assert fleet.tokens()[0]["seats_used"] == 1
    audit = fleet.db_rows("SELECT action, target FROM audit_log WHERE action LIKE 'agent.%'")
    assert audit == [("agent.registered", identity.agent_id)]


def assert_nothing_saved(state_dir: Path) -> None:
    assert not state_dir.exists() or sorted(p.name for p in state_dir.iterdir()) == []


@pytest.mark.parametrize("problem", ["expired", "used up", "revoked", "unknown"])
def test_a_token_that_is_not_valid_is_refused_with_its_reason(fleet: Fleet, problem: str) -> None:
    # The reason goes only to whoever holds the secret: a guessed one is always unknown.
    token = fleet.registration_token(seats=1)
    token_id = fleet.tokens()[0]["id"]
    if problem == "expired":
        fleet.db_execute("UPDATE registration_tokens SET expires_at = '2020-01-01T00:00:00Z'")
    elif problem == "used up":
        fleet.enrol(token=token)
    elif problem == "revoked":
        assert fleet.api("POST", f"/tokens/{token_id}/revoke").status_code == 200
    else:
        secret, fingerprint = token.split(".")
        token = secret[:-4] + "AAAA." + fingerprint
    state_dir = fleet.state_dir()
    with pytest.raises((TokenRefused, SeatsUsedUp)) as refused:
        register(state_dir, fleet.appliance.url, token, host_facts())
    answer = refused.value.__cause__
    assert isinstance(answer, ApplianceError)
    assert answer.status == 401 and answer.error.startswith("registration token not accepted")
    assert answer.errors == [{"field": "token", "message": problem}]
    if problem == "used up":
        assert isinstance(refused.value, SeatsUsedUp)
    else:
        assert isinstance(refused.value, TokenRefused) and refused.value.reason == problem
    assert_nothing_saved(state_dir)
    reasons = fleet.db_rows(
        "SELECT json_extract(details, '$.reason') FROM audit_log "
        "WHERE action = 'agent.registration_refused'"
    )
    assert reasons == [(problem,)]
    assert fleet.db_rows("SELECT seats_used FROM registration_tokens") == [
        (1 if problem == "used up" else 0,)
    ]


def test_a_host_gets_the_tokens_tags_and_its_own_in_the_registration_transaction(
    fleet: Fleet,
) -> None:
    token = fleet.registration_token(tags=["lab", "site:berlin-2"])
    state_dir = fleet.state_dir()
    command = [sys.executable, "-m", "agent", "register", "--server", fleet.appliance.url]
    command += ["--token", token, "--state-dir", str(state_dir), "--tag", "Web", "--tag", "lab"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "tags: lab, site:berlin-2, web"
    agent_id = Identity.load(state_dir).agent_id  # type: ignore[union-attr]
    assert fleet.api("GET", f"/agents/{agent_id}").json()["tags"] == [
        "lab",
        "site:berlin-2",
        "web",
    ]
    audit = fleet.db_rows(
        "SELECT json_extract(details, '$.tags'), json_extract(details, '$.host_tags') "
        "FROM audit_log WHERE action = 'agent.registered'"
    )
    assert audit == [('["lab","site:berlin-2","web"]', '["lab","web"]')]
    # Again with other tags: the same agent, its tags are the admin's to change now.
    again = subprocess.run(
        [*command, "--tag", "other"], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == [
        "tags: lab, site:berlin-2, web",
        "(already registered: --tag changed nothing; change tags on the appliance)",
    ]
    assert fleet.tokens()[0]["seats_used"] == 1


def test_tags_beyond_fifty_are_refused_and_take_no_seat(fleet: Fleet) -> None:
    token = fleet.registration_token(tags=[f"t{i}" for i in range(30)])

    with pytest.raises(ApplianceError) as refused:
        register(
            fleet.state_dir(),
            fleet.appliance.url,
            token,
            host_facts(),
            tags=[f"h{i}" for i in range(30)],
        )

    assert refused.value.status == 400
    assert refused.value.errors == [
        {
            "field": "tags",
            "message": "the token's tags and the host's make 60; an agent carries at most 50",
        }
    ]
    assert fleet.tokens()[0]["seats_used"] == 0
    assert fleet.db_rows("SELECT count(*) FROM agents") == [(0,)]


def test_a_token_with_the_wrong_root_fingerprint_is_refused_before_registering(
    fleet: Fleet,
) -> None:
    token = fleet.registration_token()
    secret, _ = token.split(".")
    impostor = f"{secret}.{'a' * 32}"
    state_dir = fleet.state_dir()
    with pytest.raises(TrustError, match="does not match the fingerprint"):
        register(state_dir, fleet.appliance.url, impostor, host_facts())
    assert_nothing_saved(state_dir)
    # The agent never sent the token: no seat taken, nothing registered.
    assert fleet.db_rows("SELECT seats_used FROM registration_tokens") == [(0,)]
    assert fleet.db_rows("SELECT count(*) FROM agents") == [(0,)]


def test_private_key_files_are_readable_by_their_owner_only(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    for path in (state_dir / "agent.key", key_file_for(fleet.appliance.data_dir)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_the_agent_cli_registers_and_reports_status(fleet: Fleet) -> None:
    state_dir = fleet.state_dir()
    token = fleet.registration_token()
    command = [
        sys.executable,
        "-m",
        "agent",
        "register",
        "--server",
        fleet.appliance.url,
        "--token",
        token,
        "--state-dir",
        str(state_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "registered as agent" in result.stdout
    status = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0 and '"key_set_version": 1' in status.stdout
    bad = subprocess.run(
        [*command[:-4], "--token", "not-a-token", "--state-dir", str(fleet.state_dir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("redflag-agent: error: registration token: expected")
    assert token.split(".")[0] not in result.stdout + result.stderr


def test_token_create_cli_prints_the_agent_command(fleet: Fleet) -> None:
    result = run_cli(
        "token",
        "create",
        "--seats",
        "3",
        "--expires",
        "2h",
        "--data-dir",
        str(fleet.appliance.data_dir),
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[0]
    assert token.startswith("rf_reg_")
    assert f"redflag-agent register --server http://APPLIANCE-ADDRESS:8080 --token {token}" in (
        result.stdout
    )
    fleet.secrets.append(token.split(".")[0])
    listed = run_cli("token", "list", "--data-dir", str(fleet.appliance.data_dir))
    assert "seats 0/3" in listed.stdout


def test_token_create_cli_gives_tags_and_can_refuse_host_tags(fleet: Fleet) -> None:
    data_dir = str(fleet.appliance.data_dir)
    made = run_cli(
        "token",
        "create",
        "--tag",
        "Office",
        "--tag",
        "site:b",
        "--no-host-tags",
        "--data-dir",
        data_dir,
    )
    assert made.returncode == 0, made.stderr
    fleet.secrets.append(made.stdout.splitlines()[0].split(".")[0])
    assert "tags: office, site:b; tags of the host's own (register --tag): refused." in (
        made.stdout
    )
    listed = run_cli("token", "list", "--data-dir", data_dir)
    assert listed.stdout.rstrip().endswith("tags office,site:b (fixed)")
    assert (fleet.tokens()[0]["tags"], fleet.tokens()[0]["allow_host_tags"]) == (
        ["office", "site:b"],
        False,
    )
    bad = run_cli("token", "create", "--tag", "no spaces", "--data-dir", data_dir)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith(
        "--tag: a tag is 1-40 letters, digits and . _ : - and starts with a letter or digit"
    )
    refused = fleet.api("POST", "/tokens", json={"tags": ["ok", "-x"]})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {
            "field": "tags",
            "message": "a tag is 1-40 letters, digits and . _ : - and starts with a letter "
            "or digit",
        }
    ]
    assert len(fleet.tokens()) == 1


def test_each_token_action_has_help_of_its_own() -> None:
    create = run_cli("token", "create", "--help")
    assert create.returncode == 0, create.stderr
    assert create.stdout.startswith("usage: redflag-appliance token create")
    assert "--seats" in create.stdout and "--expires" in create.stdout
    assert "examples:\n  redflag-appliance token create --seats 10" in create.stdout
    assert "token_id" not in create.stdout and "{create,list,revoke}" not in create.stdout
    revoke = run_cli("token", "revoke", "--help")
    assert revoke.stdout.startswith("usage: redflag-appliance token revoke")
    assert "--seats" not in revoke.stdout and "TOKEN_ID" in revoke.stdout
    listing = run_cli("token", "list", "--help")
    assert listing.stdout.startswith("usage: redflag-appliance token list")
    assert "--seats" not in listing.stdout and "examples:" in listing.stdout
    # The group names its actions; a missing id is a usage error, exit code 2.
    group = run_cli("token", "--help")
    assert "create" in group.stdout and "revoke" in group.stdout
    missing = run_cli("token", "revoke")
    assert missing.returncode == 2 and "TOKEN_ID" in missing.stderr


def test_each_keys_action_has_help_of_its_own() -> None:
    rotate = run_cli("keys", "rotate", "--help")
    assert rotate.returncode == 0, rotate.stderr
    assert rotate.stdout.startswith("usage: redflag-appliance keys rotate")
    assert "--overlap" in rotate.stdout and "KEYID" not in rotate.stdout
    assert "redflag-appliance keys rotate --overlap 7d" in rotate.stdout
    revoke = run_cli("keys", "revoke", "--help")
    assert revoke.stdout.startswith("usage: redflag-appliance keys revoke")
    assert "KEYID" in revoke.stdout and "--overlap" not in revoke.stdout
    missing = run_cli("keys", "revoke")
    assert missing.returncode == 2 and "KEYID" in missing.stderr


def test_registration_is_rate_limited_per_address(fleet: Fleet) -> None:
    answers = []
    for _ in range(12):
        response = httpx.post(f"{fleet.appliance.url}/api/v1/agents/register", json={})
        answers.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"] == "too many registration attempts from this address"
            break
    assert answers[:10] == [400] * 10 and answers[-1] == 429
    metrics = httpx.get(f"{fleet.appliance.url}/metrics").text
    assert 'redflag_rate_limited_total{limiter="registration"} 1.0' in metrics


def test_admin_endpoints_need_the_admin_role_and_a_token(fleet: Fleet, tmp_path: Path) -> None:
    data_dir = str(fleet.appliance.data_dir)
    assert httpx.post(f"{fleet.appliance.url}/api/v1/tokens", json={}).status_code == 401
    created = run_cli(
        "user",
        "create",
        "vera",
        "--role",
        "viewer",
        "--password-stdin",
        "--data-dir",
        data_dir,
        input_text="a long viewer password\n",
    )
    assert created.returncode == 0, created.stderr
    issued = run_cli(
        "api-token", "create", "--user", "vera", "--name", "ro", "--data-dir", data_dir
    )
    assert issued.returncode == 0, issued.stderr
    viewer = issued.stdout.strip()
    fleet.secrets.append(viewer)
    headers = {"Authorization": f"Bearer {viewer}"}
    refused = httpx.post(f"{fleet.appliance.url}/api/v1/tokens", json={}, headers=headers)
    assert refused.status_code == 403
    assert httpx.get(f"{fleet.appliance.url}/api/v1/keys", headers=headers).status_code == 200


def test_export_root_prints_the_fingerprint_tokens_carry(fleet: Fleet) -> None:
    token = fleet.registration_token()
    result = run_cli("keys", "export-root", "--data-dir", str(fleet.appliance.data_dir))
    assert result.returncode == 0, result.stderr
    assert f"fingerprint {token.split('.')[1]}" in result.stdout
