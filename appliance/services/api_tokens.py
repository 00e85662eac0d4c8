"""API tokens for scripts: each acts as one dashboard user with that user's role. The
plaintext is shown once, at creation; only its SHA-256 digest is stored."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import unicodedata
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, Invalid, NotFound
from appliance.services import audit
from appliance.services.users import Principal, UserDisabled, UserError, existing_user
from appliance.store import users as users_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, parse_iso, utc_now

API_TOKEN_PREFIX = "rf_api_"  # noqa: S105 (a prefix, not a secret)
API_TOKEN_CHARS = len(API_TOKEN_PREFIX) + 43  # secrets.token_urlsafe(32)
MAX_TOKEN_NAME_CHARS = 100
MAX_TOKEN_LIFETIME = timedelta(days=3650)
# last_used_at is for humans ("unused for months?"); a write per request is not needed.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


class InvalidApiToken(UserError, Invalid):
    """A name or lifetime for a new API token that is not allowed; `field` says which
    ('name' or 'expires')."""

    def __init__(self, message: str, field: str = "name"):
        super().__init__(message, field)


class ApiTokenNotFound(UserError, NotFound):
    pass


class ApiTokenAlreadyRevoked(UserError, Conflict):
    pass


class NotAuthenticated(Exception):
    """The API token is unknown, revoked or expired, or its user is disabled. `reason`
    is for the appliance's own log, never for the caller."""

    def __init__(self, reason: str):
        super().__init__("not authenticated")
        self.reason = reason


@dataclass(frozen=True)
class ApiToken:
    id: int
    user_id: int
    username: str
    name: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None

    def state(self, now: datetime) -> str:
        """'revoked', 'expired' or 'active'."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and parse_iso(self.expires_at) <= now:
            return "expired"
        return "active"


def hash_api_token(token: str) -> str:
    # Tokens carry 256 random bits: a fast hash is enough, and lookups stay fast.
    return hashlib.sha256(token.encode()).hexdigest()


async def create_api_token(
    db: Database,
    actor: Actor,
    username: str,
    name: str,
    *,
    expires_in: timedelta | None = None,
) -> str:
    """A new API token acting as `username`. The plaintext is returned here, once;
    only its SHA-256 digest is stored."""
    token, _ = await issue_api_token(db, actor, username, name, expires_in=expires_in)
    return token


async def issue_api_token(
    db: Database,
    actor: Actor,
    username: str,
    name: str,
    *,
    expires_in: timedelta | None = None,
) -> tuple[str, ApiToken]:
    """Like `create_api_token`, and the stored record too."""
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME_CHARS:
        raise InvalidApiToken(
            f"an API token needs a name of 1-{MAX_TOKEN_NAME_CHARS} characters, "
            "saying where it is used"
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidApiToken("an API token's name must not contain control characters")
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME:
        raise InvalidApiToken(
            f"an API token must expire in more than zero and at most "
            f"{MAX_TOKEN_LIFETIME.days} days; give no expiry for one that never expires",
            field="expires",
        )
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = iso(actor.at + expires_in) if expires_in is not None else None

    def issue(tx: Transaction) -> ApiToken:
        user = existing_user(tx.conn, username)
        if user.disabled:
            raise UserDisabled(f"user {user.username!r} is disabled; enable them first")
        token_id = users_store.insert_api_token(
            tx.conn,
            user_id=user.id,
            name=name,
            token_hash=hash_api_token(token),
            created_at=iso(actor.at),
            expires_at=expires_at,
        )
        # Detail keys avoid the word "token": the sanitiser would redact their values.
        audit.record(
            tx.conn,
            actor,
            "api_token.created",
            target=user.username,
            details={"id": token_id, "name": name, "expires_at": expires_at},
        )
        return _api_token(users_store.api_token_by_id(tx.conn, token_id))

    return token, await db.write(issue)


async def authenticate_api_token(
    db: Database, token: str, *, now: datetime | None = None
) -> Principal:
    """Who `token` acts for; NotAuthenticated when it is unknown, revoked or expired or
    its user is disabled."""
    if not token.startswith(API_TOKEN_PREFIX) or len(token) != API_TOKEN_CHARS:
        raise NotAuthenticated("not a RedFlag API token")
    moment = now or utc_now()
    row = await db.read(users_store.api_token_by_hash, hash_api_token(token))
    if row is None:
        raise NotAuthenticated("unknown token")
    state = _api_token(row).state(moment)
    if state != "active":
        raise NotAuthenticated(f"{state} token")
    if row["user_disabled"]:
        raise NotAuthenticated("user disabled")
    last_used = row["last_used_at"]
    if last_used is None or parse_iso(last_used) <= moment - TOKEN_TOUCH_INTERVAL:
        await db.write(lambda tx: users_store.touch_api_token(tx.conn, row["id"], iso(moment)))
    return Principal(row["user_id"], row["username"], row["role"], via="api_token")


async def revoke_api_token(db: Database, actor: Actor, token_id: int) -> ApiToken:
    def revoke(tx: Transaction) -> ApiToken:
        row = users_store.api_token_by_id(tx.conn, token_id)
        if row is None:
            raise ApiTokenNotFound(f"there is no API token with id {token_id}")
        if not users_store.revoke_api_token(tx.conn, token_id, iso(actor.at)):
            raise ApiTokenAlreadyRevoked(
                f"API token {token_id} was already revoked at {row['revoked_at']}"
            )
        audit.record(
            tx.conn,
            actor,
            "api_token.revoked",
            target=row["username"],
            details={"id": token_id, "name": row["name"]},
        )
        return _api_token(users_store.api_token_by_id(tx.conn, token_id))

    return await db.write(revoke)


async def list_api_tokens(db: Database, username: str | None = None) -> list[ApiToken]:
    """Every API token (revoked and expired ones too), or only `username`'s."""
    return await db.read(_list_api_tokens, username)


def _list_api_tokens(conn: sqlite3.Connection, username: str | None = None) -> list[ApiToken]:
    if username is None:
        rows = users_store.all_api_tokens(conn)
    else:
        user = existing_user(conn, username)
        rows = users_store.api_tokens_for_user(conn, user.id)
    return [_api_token(row) for row in rows]


def _api_token(row: sqlite3.Row | None) -> ApiToken:
    assert row is not None
    return ApiToken(**{column.name: row[column.name] for column in fields(ApiToken)})
