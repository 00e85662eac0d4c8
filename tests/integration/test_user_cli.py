"""`redflag-appliance user ...` and `api-token ...` as an operator runs them: real
subprocesses on a migrated data dir, one-line errors, tokens shown exactly once."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess

import pytest

from appliance.settings import Settings
from tests.support import run_cli

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


def cli(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--data-dir", str(settings.data_dir), input_text=stdin)


def create_user(settings: Settings, name: str, role: str) -> subprocess.CompletedProcess[str]:
    return cli(
        settings, "user", "create", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n"
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *, says: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("redflag-appliance: error: ")
    assert result.stderr.count("\n") == 1, f"one line saying what is wrong: {result.stderr!r}"
    assert says in result.stderr


def test_a_user_created_with_the_password_on_stdin_is_listed(migrated: Settings) -> None:
    result = create_user(migrated, "alice", "admin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "created user alice (admin)\n"

    listed = cli(migrated, "user", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["USERNAME", "ROLE", "STATE", "CREATED", "LAST", "LOGIN"]
    assert row.split()[:3] == ["alice", "admin", "active"]
    assert row.endswith("never")

    (user,) = json.loads(cli(migrated, "user", "list", "--json").stdout)
    assert user["username"] == "alice" and user["role"] == "admin"
    assert user["state"] == "active" and user["disabled"] is False
    assert "password_hash" not in user


def test_an_api_token_is_printed_once_listed_without_itself_and_revoked(
    migrated: Settings,
) -> None:
    create_user(migrated, "ci-bot", "operator")
    created = cli(migrated, "api-token", "create", "--user", "ci-bot", "--name", "deploy")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"rf_api_[A-Za-z0-9_-]{43}", token), "stdout holds the token alone"
    assert "will not be shown again" in created.stderr

    listed = cli(migrated, "api-token", "list", "--json")
    assert token not in listed.stdout
    (entry,) = json.loads(listed.stdout)
    assert (entry["id"], entry["username"], entry["name"]) == (1, "ci-bot", "deploy")
    assert entry["state"] == "active" and entry["expires_at"] is None

    revoked = cli(migrated, "api-token", "revoke", "1")
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == "revoked API token 1 ('deploy' of ci-bot)\n"
    (entry,) = json.loads(cli(migrated, "api-token", "list", "--json").stdout)
    assert entry["state"] == "revoked"
    assert_one_line_error(cli(migrated, "api-token", "revoke", "1"), says="already revoked")


def test_a_token_with_an_expiry_shows_when_it_expires(migrated: Settings) -> None:
    create_user(migrated, "alice", "viewer")
    created = cli(
        migrated, "api-token", "create", "--user", "alice", "--name", "grafana", "--expires", "30d"
    )
    assert created.returncode == 0, created.stderr
    listed = cli(migrated, "api-token", "list", "--user", "alice")
    header, row = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "USER", "NAME", "STATE", "CREATED"]
    assert row.split()[:4] == ["1", "alice", "grafana", "active"]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+never$", row), "expiry, then last used"


def test_a_bad_role_fails_with_one_line_and_creates_nothing(migrated: Settings) -> None:
    result = create_user(migrated, "alice", "root")
    assert_one_line_error(result, says="unknown role 'root'; choose one of admin, operator, viewer")
    assert json.loads(cli(migrated, "user", "list", "--json").stdout) == []


def test_a_short_password_fails_with_one_line_and_creates_nothing(migrated: Settings) -> None:
    result = cli(
        migrated,
        "user",
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        stdin="hunter2\n",
    )
    assert_one_line_error(result, says="at least 12 characters")
    assert "hunter2" not in result.stderr
    assert json.loads(cli(migrated, "user", "list", "--json").stdout) == []


def test_without_a_terminal_the_password_must_come_from_stdin(migrated: Settings) -> None:
    result = cli(migrated, "user", "create", "alice", "--role", "admin")
    assert result.returncode == 2
    assert "use --password-stdin" in result.stderr


def test_a_new_password_replaces_the_old_one(migrated: Settings) -> None:
    create_user(migrated, "alice", "admin")
    result = cli(
        migrated, "user", "passwd", "alice", "--password-stdin", stdin="a brand new passphrase\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "changed the password of alice\n"
    assert_one_line_error(
        cli(migrated, "user", "passwd", "ghost", "--password-stdin", stdin=PASSWORD),
        says="there is no user named 'ghost'",
    )


def test_duplicate_users_unknown_users_and_bad_expiries_fail_with_one_line(
    migrated: Settings,
) -> None:
    create_user(migrated, "alice", "admin")
    assert_one_line_error(create_user(migrated, "Alice", "viewer"), says="already exists")
    assert_one_line_error(
        cli(migrated, "api-token", "create", "--user", "ghost", "--name", "ci"),
        says="there is no user named 'ghost'",
    )
    assert_one_line_error(
        cli(migrated, "api-token", "create", "--user", "alice", "--name", "ci", "--expires", "30x"),
        says="--expires: '30x' is not a duration",
    )


def test_every_command_explains_itself_with_examples() -> None:
    for command in (
        ["user", "--help"],
        ["user", "create", "--help"],
        ["user", "passwd", "--help"],
        ["user", "list", "--help"],
        ["api-token", "--help"],
        ["api-token", "create", "--help"],
        ["api-token", "list", "--help"],
        ["api-token", "revoke", "--help"],
    ):
        result = run_cli(*command)
        assert result.returncode == 0, result.stderr
        assert "examples:\n  redflag-appliance " in result.stdout, command


def test_the_audit_log_records_it_all_and_still_verifies(migrated: Settings) -> None:
    create_user(migrated, "alice", "admin")
    cli(migrated, "user", "passwd", "alice", "--password-stdin", stdin="a brand new passphrase")
    cli(migrated, "api-token", "create", "--user", "alice", "--name", "ci")
    cli(migrated, "api-token", "revoke", "1")
    conn = sqlite3.connect(migrated.database_path)
    logged = conn.execute("SELECT actor, action, target, details FROM audit_log").fetchall()
    conn.close()
    assert [row[:3] for row in logged] == [
        ("cli", "user.created", "alice"),
        ("cli", "user.password_changed", "alice"),
        ("cli", "api_token.created", "alice"),
        ("cli", "api_token.revoked", "alice"),
    ]
    assert not any("passphrase" in row[3] or "rf_api_" in row[3] for row in logged)
    assert cli(migrated, "audit", "verify").returncode == 0
