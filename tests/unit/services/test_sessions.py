"""Web sessions: only a hash of the cookie is stored, sessions end after idling or at
their absolute lifetime, and a disabled user or a new password ends them at once."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nacl.pwhash import argon2id

from appliance.domain.actors import Actor
from appliance.services import sessions, setup, tokens, users
from appliance.settings import Settings
from appliance.store.database import Database

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "PASSWORD_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(users, "PASSWORD_MEMLIMIT", argon2id.MEMLIMIT_MIN)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


async def _user(db: Database, name: str = "alice", role: str = "operator") -> users.User:
    return await users.create_user(db, Actor("test"), name, PASSWORD, role)


async def test_only_a_hash_of_the_cookie_is_stored(db: Database, migrated: Settings) -> None:
    new = await sessions.start_session(db, await _user(db), ip="127.0.0.1", user_agent="t")
    conn = sqlite3.connect(migrated.database_path)
    stored = conn.execute("SELECT id_hash, csrf_token FROM sessions").fetchall()
    conn.close()
    assert stored == [(hashlib.sha256(new.cookie_value.encode()).hexdigest(), new.csrf_token)]
    assert new.cookie_value.startswith("rf_ses_")  # so the log redactor knows it
    found = await sessions.session_for_cookie(db, new.cookie_value)
    assert found is not None and found.principal.username == "alice"
    assert found.principal.via == "session"


async def test_a_session_ends_after_idling_and_at_its_absolute_lifetime(db: Database) -> None:
    user = await _user(db)
    idle_end = NOW + sessions.IDLE_TIMEOUT
    idle = await sessions.start_session(db, user, ip="", user_agent="", now=NOW)
    assert await sessions.session_for_cookie(db, idle.cookie_value, now=idle_end) is None
    fresh = await sessions.start_session(db, user, ip="", user_agent="", now=NOW)
    just_before = idle_end - timedelta(seconds=1)
    assert await sessions.session_for_cookie(db, fresh.cookie_value, now=just_before)

    # Used every few hours, it slides the idle timeout, but never past 7 days.
    busy = await sessions.start_session(db, user, ip="", user_agent="", now=NOW)
    moment = NOW
    while moment < NOW + sessions.ABSOLUTE_LIFETIME - timedelta(hours=6):
        moment += timedelta(hours=6)
        assert await sessions.session_for_cookie(db, busy.cookie_value, now=moment), moment
    end = NOW + sessions.ABSOLUTE_LIFETIME
    assert await sessions.session_for_cookie(db, busy.cookie_value, now=end) is None


async def test_disabling_a_user_or_changing_the_password_ends_their_sessions(
    db: Database,
) -> None:
    user = await _user(db)
    first = await sessions.start_session(db, user, ip="", user_agent="")
    await users.set_user_disabled(db, Actor("test"), "alice", True)
    assert await sessions.session_for_cookie(db, first.cookie_value) is None
    await users.set_user_disabled(db, Actor("test"), "alice", False)

    second = await sessions.start_session(db, user, ip="", user_agent="")
    await users.change_password(db, Actor("test"), "alice", PASSWORD + " new")
    assert await sessions.session_for_cookie(db, second.cookie_value) is None


async def test_unknown_oversized_or_missing_cookies_find_nothing(db: Database) -> None:
    for cookie in (None, "", "rf_ses_nope", "x" * 5000):
        assert await sessions.session_for_cookie(db, cookie) is None
    await sessions.end_session(db, "x" * 5000)  # harmless


async def test_the_first_admin_can_be_created_once(db: Database) -> None:
    assert await setup.needs_setup(db)
    admin, token, info = await setup.complete_setup(
        db, Actor("setup"), "root", PASSWORD, root_fingerprint="f" * 32
    )
    assert admin.role == "admin" and token.endswith("." + "f" * 32) and info.seats_total == 10
    assert not await setup.needs_setup(db)
    with pytest.raises(setup.SetupAlreadyDone):
        await setup.complete_setup(db, Actor("setup"), "other", PASSWORD, root_fingerprint="f" * 32)
    # The refused attempt made no token either.
    assert [t.note for t in await tokens.list_tokens(db)] == ["created by the setup wizard"]


def test_csrf_tokens_compare_exactly() -> None:
    assert sessions.csrf_matches("abc", "abc")
    assert not sessions.csrf_matches("abc", "abd")
    assert not sessions.csrf_matches("abc", "")
    assert not sessions.csrf_matches("abc", None)
