"""Web UI login sessions: a random cookie value (only its hash is stored), a CSRF token
per session, an idle timeout and an absolute lifetime."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from appliance.services.users import Principal, User
from appliance.store import sessions as sessions_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, parse_iso, utc_now

IDLE_TIMEOUT = timedelta(hours=12)
ABSOLUTE_LIFETIME = timedelta(days=7)
# Sliding the idle timeout costs a write; once a minute per session is plenty.
TOUCH_INTERVAL = timedelta(minutes=1)
MAX_COOKIE_CHARS = 100


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf_token: str
    id_hash: str


@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    csrf_token: str


def _hash(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


async def start_session(
    db: Database, user: User, *, ip: str, user_agent: str, now: datetime | None = None
) -> NewSession:
    moment = now or utc_now()
    # The prefix lets the log redactor recognise a session cookie that leaks anywhere.
    cookie_value = "rf_ses_" + secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)

    def start(tx: Transaction) -> None:
        sessions_store.delete_expired_sessions(tx.conn, iso(moment))
        sessions_store.insert_session(
            tx.conn,
            id_hash=_hash(cookie_value),
            user_id=user.id,
            csrf_token=csrf_token,
            created_at=iso(moment),
            expires_at=iso(moment + IDLE_TIMEOUT),
            ip=ip,
            user_agent=user_agent[:200],
        )

    await db.write(start)
    return NewSession(cookie_value, csrf_token)


async def session_for_cookie(
    db: Database, cookie_value: str | None, *, now: datetime | None = None
) -> WebSession | None:
    """The live session behind a cookie; None when it is unknown, expired, past its
    absolute lifetime, or its user is disabled."""
    if not cookie_value or len(cookie_value) > MAX_COOKIE_CHARS:
        return None
    moment = now or utc_now()
    id_hash = _hash(cookie_value)
    row = await db.read(sessions_store.session_with_user, id_hash)
    if row is None or row["disabled"]:
        return None
    expires_at = parse_iso(row["expires_at"])
    hard_end = parse_iso(row["created_at"]) + ABSOLUTE_LIFETIME
    if moment >= expires_at or moment >= hard_end:
        return None
    if moment - parse_iso(row["last_seen_at"]) >= TOUCH_INTERVAL:
        seen, until = iso(moment), iso(min(moment + IDLE_TIMEOUT, hard_end))
        await db.write(lambda tx: sessions_store.touch_session(tx.conn, id_hash, seen, until))
    principal = Principal(row["user_id"], row["username"], row["role"], via="session")
    return WebSession(principal, row["csrf_token"], id_hash)


async def end_session(db: Database, cookie_value: str | None) -> None:
    if not cookie_value or len(cookie_value) > MAX_COOKIE_CHARS:
        return
    id_hash = _hash(cookie_value)
    await db.write(lambda tx: sessions_store.delete_session(tx.conn, id_hash))
