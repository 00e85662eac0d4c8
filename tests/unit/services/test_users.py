"""Dashboard users and API tokens: secrets are stored only as hashes, every failed login
looks the same to the caller, five in a row lock the account, and every change is
audited without the secret in it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from nacl.pwhash import argon2id

from appliance.domain.actors import Actor
from appliance.services import api_tokens, audit, users
from appliance.settings import Settings
from appliance.store.database import Database

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 29, 2, 24, 3, tzinfo=UTC)
PRODUCTION_LIMITS = (users.PASSWORD_OPSLIMIT, users.PASSWORD_MEMLIMIT)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its lowest cost: the rules under test do not depend on the cost, and
    the suite stays fast. One test below checks the cost the appliance really uses."""
    monkeypatch.setattr(users, "PASSWORD_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(users, "PASSWORD_MEMLIMIT", argon2id.MEMLIMIT_MIN)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def raw(migrated: Settings) -> Iterator[sqlite3.Connection]:
    """A plain connection to look at what was really stored."""
    conn = sqlite3.connect(migrated.database_path)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def database_text(conn: sqlite3.Connection) -> str:
    """Everything in the database as SQL text: a secret must appear nowhere in it."""
    return "\n".join(conn.iterdump())


def audit_rows(conn: sqlite3.Connection) -> list[tuple[str, str, str, dict[str, object]]]:
    rows = conn.execute("SELECT actor, action, target, details FROM audit_log ORDER BY id")
    return [(r["actor"], r["action"], r["target"], json.loads(r["details"])) for r in rows]


async def make_user(db: Database, username: str = "alice", role: str = "admin") -> users.User:
    return await users.create_user(db, Actor("cli", at=NOW), username, PASSWORD, role)


async def failed_login(db: Database, username: str, password: str, now: datetime) -> str:
    with pytest.raises(users.LoginFailed) as caught:
        await users.verify_password(db, username, password, "192.0.2.7", now=now)
    return str(caught.value)


# Passwords


async def test_a_password_is_stored_only_as_an_argon2id_hash(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    (stored,) = raw.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in database_text(raw)
    assert ("cli", "user.created", "alice", {"role": "admin"}) in audit_rows(raw)


async def test_two_users_with_the_same_password_get_different_hashes(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db, "alice")
    await make_user(db, "bob")
    hashes = {row[0] for row in raw.execute("SELECT password_hash FROM users")}
    assert len(hashes) == 2


def test_the_appliance_hashes_with_argon2id_at_the_interactive_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert PRODUCTION_LIMITS == (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)
    monkeypatch.setattr(users, "PASSWORD_OPSLIMIT", PRODUCTION_LIMITS[0])
    monkeypatch.setattr(users, "PASSWORD_MEMLIMIT", PRODUCTION_LIMITS[1])
    hashed = users.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=2,")
    assert users.password_matches(hashed, PASSWORD)


def test_the_same_password_typed_in_another_unicode_form_still_matches() -> None:
    composed, decomposed = "caf\u00e9 au lait 2026", "cafe\u0301 au lait 2026"
    assert users.password_matches(users.hash_password(composed), decomposed)


@pytest.mark.parametrize(
    ("username", "password", "role", "error", "message"),
    [
        ("alice", "hunter2", "admin", users.InvalidPassword, "at least 12"),
        ("alice", "new\nline in the password", "admin", users.InvalidPassword, "control"),
        ("alice", PASSWORD, "root", users.InvalidRole, "admin, operator, viewer"),
        ("", PASSWORD, "admin", users.InvalidUsername, "1-64"),
        ("al ice", PASSWORD, "admin", users.InvalidUsername, "no spaces"),
        ("a" * 65, PASSWORD, "admin", users.InvalidUsername, "1-64"),
    ],
)
async def test_bad_usernames_roles_and_passwords_are_refused_and_nothing_is_stored(
    db: Database,
    raw: sqlite3.Connection,
    username: str,
    password: str,
    role: str,
    error: type[users.UserError],
    message: str,
) -> None:
    with pytest.raises(error, match=message) as caught:
        await users.create_user(db, Actor("cli"), username, password, role)
    assert password not in str(caught.value)
    assert raw.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    assert audit_rows(raw) == []


async def test_usernames_are_unique_whatever_their_case(db: Database) -> None:
    await make_user(db, "alice")
    with pytest.raises(users.UserExists, match="already exists"):
        await make_user(db, "Alice")


# Logging in


async def test_the_right_password_logs_in_and_clears_earlier_failures(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    await failed_login(db, "alice", "wrong password!", NOW)
    user = await users.verify_password(db, "ALICE", PASSWORD, "192.0.2.7", now=NOW)
    assert user.username == "alice"
    assert user.failed_logins == 0
    assert user.last_login_at == "2026-11-29T02:24:03Z"
    assert audit_rows(raw)[-1][:3] == ("user:alice", "user.logged_in", "alice")


async def test_wrong_password_locked_disabled_and_unknown_user_all_fail_alike(
    db: Database,
) -> None:
    await make_user(db, "locked")
    for _ in range(users.MAX_FAILED_LOGINS):
        await failed_login(db, "locked", "not the password", NOW)
    await make_user(db, "disabled")
    await users.set_user_disabled(db, Actor("cli"), "disabled", True)
    await make_user(db, "alice")

    messages = {
        await failed_login(db, "alice", "not the password", NOW),
        await failed_login(db, "locked", PASSWORD, NOW),
        await failed_login(db, "disabled", PASSWORD, NOW),
        await failed_login(db, "nobody", PASSWORD, NOW),
    }
    assert messages == {"wrong username or password"}


async def test_five_wrong_passwords_in_a_row_lock_the_account_for_15_minutes(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    for attempt in range(1, 5):
        await failed_login(db, "alice", "not the password", NOW)
        assert (await users.list_users(db))[0].failed_logins == attempt
        assert (await users.list_users(db))[0].locked_until is None
    await failed_login(db, "alice", "not the password", NOW)

    user = (await users.list_users(db))[0]
    assert user.locked_until == "2026-11-29T02:39:03Z"
    assert user.is_locked(NOW + timedelta(minutes=14))
    await failed_login(db, "alice", PASSWORD, NOW + timedelta(minutes=14))

    entries = audit_rows(raw)
    failures = [e for e in entries if e[1] == "user.login_failed"]
    assert [f[3] for f in failures[:5]] == [
        {"reason": "wrong password", "failed_logins": n} for n in range(1, 6)
    ]
    assert failures[5][3] == {"reason": "locked"}
    assert all(f[2] == "alice" for f in failures)
    locks = [e for e in entries if e[1] == "user.locked"]
    assert locks == [
        ("system", "user.locked", "alice", {"until": "2026-11-29T02:39:03Z", "after_failures": 5})
    ]


async def test_the_lock_expires_by_itself_after_15_minutes(db: Database) -> None:
    await make_user(db)
    for _ in range(5):
        await failed_login(db, "alice", "not the password", NOW)
    later = NOW + users.LOCKOUT + timedelta(seconds=1)
    user = await users.verify_password(db, "alice", PASSWORD, "192.0.2.7", now=later)
    assert user.locked_until is None


async def test_attempts_on_a_locked_account_neither_count_nor_extend_the_lock(
    db: Database,
) -> None:
    await make_user(db)
    for _ in range(5):
        await failed_login(db, "alice", "not the password", NOW)
    for minute in range(1, 15):
        await failed_login(db, "alice", "still guessing", NOW + timedelta(minutes=minute))
    user = (await users.list_users(db))[0]
    assert user.locked_until == "2026-11-29T02:39:03Z"
    assert user.failed_logins == 0


async def test_concurrent_wrong_passwords_are_all_counted(db: Database) -> None:
    await make_user(db)

    async def attempt() -> None:
        await failed_login(db, "alice", "not the password", NOW)

    await asyncio.gather(*(attempt() for _ in range(5)))
    assert (await users.list_users(db))[0].is_locked(NOW)


async def test_a_failed_login_never_records_or_logs_the_password(
    db: Database, raw: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await make_user(db)
    caplog.set_level(logging.INFO, logger="redflag.users")
    for guess in ("guess number one!", "guess number two!"):
        await failed_login(db, "alice", guess, NOW)
        await failed_login(db, "nobody", guess, NOW)
    stored = database_text(raw)
    logged = " ".join(
        f"{record.getMessage()} {record.__dict__.get('fields')}" for record in caplog.records
    )
    assert "user.login_failed" in {record.__dict__.get("event") for record in caplog.records}
    for guess in ("guess number one!", "guess number two!"):
        assert guess not in stored
        assert guess not in logged


async def test_a_new_password_lifts_the_lock_and_the_old_one_stops_working(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    for _ in range(5):
        await failed_login(db, "alice", "not the password", NOW)
    await users.change_password(db, Actor("cli"), "alice", "a brand new passphrase")
    await failed_login(db, "alice", PASSWORD, NOW)
    assert await users.verify_password(db, "alice", "a brand new passphrase", now=NOW)
    assert "a brand new passphrase" not in database_text(raw)
    assert ("cli", "user.password_changed", "alice", {}) in audit_rows(raw)


async def test_changing_the_password_of_an_unknown_user_says_so(db: Database) -> None:
    with pytest.raises(users.UserNotFound, match="no user named 'ghost'"):
        await users.change_password(db, Actor("cli"), "ghost", PASSWORD)


async def test_the_last_enabled_admin_cannot_be_disabled(db: Database) -> None:
    await make_user(db, "alice", "admin")
    with pytest.raises(users.LastAdmin, match="only enabled admin"):
        await users.set_user_disabled(db, Actor("cli"), "alice", True)
    await make_user(db, "bob", "admin")
    assert (await users.set_user_disabled(db, Actor("cli"), "alice", True)).disabled
    with pytest.raises(users.LastAdmin):
        await users.set_user_disabled(db, Actor("cli"), "bob", True)


# Roles


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("admin", {"admin", "operator", "viewer"}),
        ("operator", {"operator", "viewer"}),
        ("viewer", {"viewer"}),
        ("nonsense", set()),
    ],
)
def test_roles_rank_admin_over_operator_over_viewer(role: str, allowed: set[str]) -> None:
    assert {needed for needed in users.ROLES if users.role_allows(role, needed)} == allowed


def test_asking_for_an_unknown_role_is_a_mistake_not_a_refusal() -> None:
    with pytest.raises(users.InvalidRole):
        users.role_allows("admin", "superuser")


# API tokens


async def test_an_api_token_is_returned_once_and_stored_only_as_its_sha256(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    token = await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    assert re.fullmatch(r"rf_api_[A-Za-z0-9_-]{43}", token)
    (stored,) = raw.execute("SELECT token_hash FROM api_tokens").fetchone()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in database_text(raw)
    assert token.removeprefix("rf_api_") not in database_text(raw)
    actor, action, target, details = audit_rows(raw)[-1]
    assert (actor, action, target) == ("cli", "api_token.created", "alice")
    assert details == {"id": 1, "name": "ci", "expires_at": None}


async def test_an_api_token_acts_as_its_user_with_their_role(db: Database) -> None:
    user = await make_user(db, "olivia", "operator")
    token = await api_tokens.create_api_token(db, Actor("cli"), "olivia", "laptop", expires_in=None)
    principal = await api_tokens.authenticate_api_token(db, token)
    assert principal == users.Principal(user.id, "olivia", "operator", via="api_token")


async def test_a_revoked_token_is_refused_and_the_revocation_audited(
    db: Database, raw: sqlite3.Connection
) -> None:
    await make_user(db)
    token = await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    (listed,) = await api_tokens.list_api_tokens(db, "alice")
    revoked = await api_tokens.revoke_api_token(db, Actor("user:bob"), listed.id)
    assert revoked.state(NOW) == "revoked"
    with pytest.raises(api_tokens.NotAuthenticated) as caught:
        await api_tokens.authenticate_api_token(db, token)
    assert caught.value.reason == "revoked token"
    assert ("user:bob", "api_token.revoked", "alice", {"id": listed.id, "name": "ci"}) in (
        audit_rows(raw)
    )


async def test_revoking_twice_or_an_unknown_token_says_so(db: Database) -> None:
    await make_user(db)
    await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    await api_tokens.revoke_api_token(db, Actor("cli"), 1)
    with pytest.raises(api_tokens.ApiTokenAlreadyRevoked, match="already revoked"):
        await api_tokens.revoke_api_token(db, Actor("cli"), 1)
    with pytest.raises(api_tokens.ApiTokenNotFound, match="no API token with id 99"):
        await api_tokens.revoke_api_token(db, Actor("cli"), 99)


async def test_an_expired_token_is_refused(db: Database) -> None:
    await make_user(db)
    token = await api_tokens.create_api_token(
        db, Actor("cli", at=NOW), "alice", "ci", expires_in=timedelta(days=30)
    )
    await api_tokens.authenticate_api_token(db, token, now=NOW + timedelta(days=29))
    with pytest.raises(api_tokens.NotAuthenticated) as caught:
        await api_tokens.authenticate_api_token(db, token, now=NOW + timedelta(days=30))
    assert caught.value.reason == "expired token"
    (listed,) = await api_tokens.list_api_tokens(db)
    assert listed.expires_at == "2026-12-29T02:24:03Z"


async def test_the_tokens_of_a_disabled_user_are_refused_until_enabled_again(
    db: Database,
) -> None:
    await make_user(db, role="operator")
    token = await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    await users.set_user_disabled(db, Actor("cli"), "alice", True)
    with pytest.raises(api_tokens.NotAuthenticated):
        await api_tokens.authenticate_api_token(db, token)
    await users.set_user_disabled(db, Actor("cli"), "alice", False)
    assert (await api_tokens.authenticate_api_token(db, token)).username == "alice"


@pytest.mark.parametrize(
    "token",
    ["", "rf_api_", "Bearer rf_api_x", "rf_api_" + "A" * 43, "rf_reg_" + "A" * 43, "x" * 10_000],
)
async def test_unknown_and_malformed_tokens_are_refused(db: Database, token: str) -> None:
    await make_user(db)
    await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    with pytest.raises(api_tokens.NotAuthenticated):
        await api_tokens.authenticate_api_token(db, token)


async def test_token_use_is_recorded_at_most_once_a_minute(db: Database) -> None:
    await make_user(db)
    token = await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)

    async def last_used_after_use(at: datetime) -> str | None:
        await api_tokens.authenticate_api_token(db, token, now=at)
        return (await api_tokens.list_api_tokens(db))[0].last_used_at

    assert await last_used_after_use(NOW) == "2026-11-29T02:24:03Z"
    assert await last_used_after_use(NOW + timedelta(seconds=30)) == "2026-11-29T02:24:03Z"
    assert await last_used_after_use(NOW + timedelta(seconds=61)) == "2026-11-29T02:25:04Z"


@pytest.mark.parametrize(
    ("name", "expires_in", "message"),
    [
        ("", None, "needs a name"),
        ("x" * 101, None, "needs a name"),
        ("ci\x1b[31m", None, "control characters"),
        ("ci", timedelta(0), "more than zero"),
        ("ci", timedelta(days=3651), "at most 3650 days"),
    ],
)
async def test_bad_token_names_and_lifetimes_are_refused(
    db: Database, raw: sqlite3.Connection, name: str, expires_in: timedelta | None, message: str
) -> None:
    await make_user(db)
    with pytest.raises(api_tokens.InvalidApiToken, match=message):
        await api_tokens.create_api_token(db, Actor("cli"), "alice", name, expires_in=expires_in)
    assert raw.execute("SELECT count(*) FROM api_tokens").fetchone()[0] == 0


async def test_tokens_are_made_only_for_existing_enabled_users(db: Database) -> None:
    with pytest.raises(users.UserNotFound):
        await api_tokens.create_api_token(db, Actor("cli"), "ghost", "ci", expires_in=None)
    await make_user(db, role="operator")
    await users.set_user_disabled(db, Actor("cli"), "alice", True)
    with pytest.raises(users.UserDisabled):
        await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)


async def test_everything_above_leaves_an_intact_audit_chain(db: Database) -> None:
    await make_user(db)
    for _ in range(5):
        await failed_login(db, "alice", "not the password", NOW)
    token = await api_tokens.create_api_token(db, Actor("cli"), "alice", "ci", expires_in=None)
    await api_tokens.authenticate_api_token(db, token)
    await api_tokens.revoke_api_token(db, Actor("cli"), 1)
    report = audit.verify_chain(db.path)
    assert report.ok, report.problems
