"""Registration tokens: random, stored only as a hash, with seats, expiry and revocation.

The token an admin hands out is `rf_reg_<secret>.<root fingerprint>`: the agent checks
the appliance's root key against the fingerprint before trusting anything it is told.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from appliance.services import audit
from appliance.store import tokens as tokens_store
from appliance.store.database import Database
from kernel.clock import iso, parse_iso, utc_now
from kernel.protocol import ProtocolError, parse_registration_token

MAX_SEATS = 100_000
MAX_LIFETIME = timedelta(days=365)
MAX_NOTE_CHARS = 200
MAX_USES_SHOWN = 1000


class InvalidTokenRequest(ValueError):
    """Bad seats/expiry/note when creating a token; `field` names which."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TokenNotFound(LookupError):
    pass


class TokenNotAccepted(Exception):
    """Registration refused. `reason` is for the audit log only: the client is never
    told whether the token existed."""

    def __init__(self, reason: str):
        super().__init__("registration token not accepted")
        self.reason = reason


@dataclass(frozen=True)
class TokenUse:
    """One registration made with a token."""

    agent_id: str | None
    hostname: str | None  # None once the agent record is deleted
    used_at: str
    ip: str | None


@dataclass(frozen=True)
class TokenInfo:
    id: int
    note: str
    seats_total: int | None
    seats_used: int
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None

    def state(self, now: datetime) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and parse_iso(self.expires_at) <= now:
            return "expired"
        if self.seats_total is not None and self.seats_used >= self.seats_total:
            return "used up"
        return "active"

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {**vars(self), "state": self.state(now)}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(
    db: Database,
    *,
    root_fingerprint: str,
    seats: int | None,
    expires_in: timedelta | None,
    note: str = "",
    actor: str,
    source_ip: str = "",
) -> tuple[str, TokenInfo]:
    """Return the token text (shown once, never stored) and its record."""
    if seats is not None and not 1 <= seats <= MAX_SEATS:
        raise InvalidTokenRequest("seats", f"between 1 and {MAX_SEATS}, or none for unlimited")
    if expires_in is not None and not timedelta(minutes=1) <= expires_in <= MAX_LIFETIME:
        raise InvalidTokenRequest("expires", "between 1 minute and 365 days")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidTokenRequest("note", f"at most {MAX_NOTE_CHARS} characters")
    secret = secrets.token_urlsafe(32)
    now = utc_now()
    expires_at = iso(now + expires_in) if expires_in else None
    async with db.write() as conn:
        token_id = await tokens_store.insert(
            conn,
            token_hash=hash_secret(secret),
            note=note,
            seats_total=seats,
            created_at=iso(now),
            created_by=actor,
            expires_at=expires_at,
        )
        await audit.record(
            conn,
            actor=actor,
            action="token.created",
            target=f"token:{token_id}",
            source_ip=source_ip,
            details={"seats": seats, "expires_at": expires_at, "note": note},
        )
    info = TokenInfo(token_id, note, seats, 0, iso(now), actor, expires_at, None)
    return f"rf_reg_{secret}.{root_fingerprint}", info


async def list_tokens(db: Database) -> list[TokenInfo]:
    async with db.read() as conn:
        return [TokenInfo(**dict(row)) for row in await tokens_store.all_tokens(conn)]


async def token_page(db: Database, page: int, per_page: int) -> tuple[list[TokenInfo], int]:
    """One page of tokens, newest first, and how many there are in all."""
    async with db.read() as conn:
        rows = await tokens_store.tokens_page(conn, per_page, (max(page, 1) - 1) * per_page)
        total = await tokens_store.count_tokens(conn)
    return [TokenInfo(**dict(row)) for row in rows], total


async def get_token(db: Database, token_id: int) -> TokenInfo:
    async with db.read() as conn:
        row = await tokens_store.by_id(conn, token_id)
    if row is None:
        raise TokenNotFound(f"there is no registration token {token_id}")
    return TokenInfo(**dict(row))


async def token_uses(db: Database, token_id: int, limit: int = MAX_USES_SHOWN) -> list[TokenUse]:
    """Which agents registered with the token, when and from where; newest first."""
    async with db.read() as conn:
        rows = await tokens_store.uses_with_agents(conn, token_id, limit)
    return [TokenUse(**dict(row)) for row in rows]


async def revoke_token(db: Database, token_id: int, *, actor: str, source_ip: str = "") -> bool:
    async with db.write() as conn:
        changed = await tokens_store.revoke(conn, token_id, iso(utc_now()))
        if changed:
            await audit.record(
                conn,
                actor=actor,
                action="token.revoked",
                target=f"token:{token_id}",
                source_ip=source_ip,
            )
    return changed


async def claim_seat(conn: aiosqlite.Connection, token: str, *, now: datetime) -> int:
    """Inside the registration transaction: check the token and take one seat.
    Returns the token id; raises TokenNotAccepted with the private reason."""
    try:
        secret, _ = parse_registration_token(token)
    except ProtocolError:
        raise TokenNotAccepted("malformed") from None
    row = await tokens_store.by_hash(conn, hash_secret(secret))
    if row is None:
        raise TokenNotAccepted("unknown")
    info = TokenInfo(**dict(row))
    state = info.state(now)
    if state != "active":
        raise TokenNotAccepted(state)
    if not await tokens_store.take_seat(conn, info.id):
        raise TokenNotAccepted("used up")
    return info.id
