"""Registration tokens: random, stored only as a hash, with seats, expiry, revocation,
and the tags every host registering with one gets.

The token an admin hands out is `rf_reg_<secret>.<root fingerprint>`: the agent checks
the appliance's root key against the fingerprint before trusting anything it is told.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid, NotFound
from appliance.services import audit
from appliance.store import tokens as tokens_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, parse_iso
from kernel.protocol import ProtocolError, parse_registration_token
from kernel.tags import InvalidTagText, clean_tags

MAX_SEATS = 100_000
MAX_LIFETIME = timedelta(days=365)
MAX_NOTE_CHARS = 200
MAX_USES_SHOWN = 1000


class InvalidTokenRequest(Invalid):
    """Bad seats/expiry/note when creating a token; `field` names which."""

    def __init__(self, field: str, message: str):
        super().__init__(message, field)


class TokenNotFound(NotFound):
    pass


class TokenNotAccepted(Exception):
    """Registration refused by the token: `reason` is one of REFUSALS. Whoever does not
    hold a real secret only ever learns "unknown" (or "malformed"): the secret has 256
    random bits, so guessing never finds one. The holder of a real token is told its
    state, because the remedy differs: a new token, one with more seats, or no --tag."""

    def __init__(self, reason: str):
        super().__init__(f"registration token not accepted: {reason}")
        self.reason = reason


# Why a token refuses a registration, as the audit log and the API answer say it.
REFUSALS = ("malformed", "unknown", "expired", "revoked", "used up", "host tags not allowed")


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
    allow_host_tags: bool = True  # may hosts add tags of their own (`register --tag`)?
    tags: tuple[str, ...] = ()  # every host registering with it gets these

    @classmethod
    def of(cls, row: sqlite3.Row, tags: list[str] | None = None) -> TokenInfo:
        return cls(
            **{**dict(row), "allow_host_tags": bool(row["allow_host_tags"])}, tags=tuple(tags or ())
        )

    def state(self, now: datetime) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and parse_iso(self.expires_at) <= now:
            return "expired"
        if self.seats_total is not None and self.seats_used >= self.seats_total:
            return "used up"
        return "active"

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {**vars(self), "tags": list(self.tags), "state": self.state(now)}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prepare(
    *,
    root_fingerprint: str,
    seats: int | None,
    expires_in: timedelta | None,
    note: str = "",
    tags: Sequence[str] = (),
    allow_host_tags: bool = True,
) -> tuple[str, Callable[[Transaction, Actor], TokenInfo]]:
    """Check a new token's terms and draw its secret: (the token text, shown once and
    never stored; the step that stores its hash inside a write transaction)."""
    if seats is not None and not 1 <= seats <= MAX_SEATS:
        raise InvalidTokenRequest("seats", f"between 1 and {MAX_SEATS}, or none for unlimited")
    if expires_in is not None and not timedelta(minutes=1) <= expires_in <= MAX_LIFETIME:
        raise InvalidTokenRequest("expires", "between 1 minute and 365 days")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidTokenRequest("note", f"at most {MAX_NOTE_CHARS} characters")
    try:
        token_tags = clean_tags(list(tags))
    except InvalidTagText as exc:
        raise InvalidTokenRequest("tags", str(exc)) from None
    secret = secrets.token_urlsafe(32)

    def store(tx: Transaction, actor: Actor) -> TokenInfo:
        expires_at = iso(actor.at + expires_in) if expires_in else None
        token_id = tokens_store.insert(
            tx.conn,
            token_hash=hash_secret(secret),
            note=note,
            seats_total=seats,
            created_at=iso(actor.at),
            created_by=actor.name,
            expires_at=expires_at,
            allow_host_tags=allow_host_tags,
        )
        tokens_store.add_tags(tx.conn, token_id, list(token_tags))
        audit.record(
            tx.conn,
            actor,
            "token.created",
            target=f"token:{token_id}",
            details={
                "seats": seats,
                "expires_at": expires_at,
                "note": note,
                "tags": list(token_tags),
                "allow_host_tags": allow_host_tags,
            },
        )
        return TokenInfo(
            token_id,
            note,
            seats,
            0,
            iso(actor.at),
            actor.name,
            expires_at,
            None,
            allow_host_tags,
            token_tags,
        )

    return f"rf_reg_{secret}.{root_fingerprint}", store


async def create_token(
    db: Database,
    actor: Actor,
    *,
    root_fingerprint: str,
    seats: int | None,
    expires_in: timedelta | None,
    note: str = "",
    tags: Sequence[str] = (),
    allow_host_tags: bool = True,
) -> tuple[str, TokenInfo]:
    """Return the token text (shown once, never stored) and its record."""
    text, store = prepare(
        root_fingerprint=root_fingerprint,
        seats=seats,
        expires_in=expires_in,
        note=note,
        tags=tags,
        allow_host_tags=allow_host_tags,
    )
    return text, await db.write(store, actor)


def _with_tags(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[TokenInfo]:
    tags = tokens_store.tags_of(conn, [row["id"] for row in rows])
    return [TokenInfo.of(row, tags.get(row["id"])) for row in rows]


async def list_tokens(db: Database) -> list[TokenInfo]:
    return await db.read(lambda conn: _with_tags(conn, tokens_store.all_tokens(conn)))


async def token_page(db: Database, page: int, per_page: int) -> tuple[list[TokenInfo], int]:
    """One page of tokens, newest first, and how many there are in all."""

    def read(conn: sqlite3.Connection) -> tuple[list[TokenInfo], int]:
        offset = (max(page, 1) - 1) * per_page
        rows = tokens_store.tokens_page(conn, per_page, offset)
        return _with_tags(conn, rows), tokens_store.count_tokens(conn)

    return await db.read(read)


async def get_token(db: Database, token_id: int) -> TokenInfo:
    def read(conn: sqlite3.Connection) -> list[TokenInfo]:
        row = tokens_store.by_id(conn, token_id)
        return _with_tags(conn, [row]) if row is not None else []

    found = await db.read(read)
    if not found:
        raise TokenNotFound(f"there is no registration token {token_id}")
    return found[0]


async def token_uses(db: Database, token_id: int, limit: int = MAX_USES_SHOWN) -> list[TokenUse]:
    """Which agents registered with the token, when and from where; newest first."""
    rows = await db.read(tokens_store.uses_with_agents, token_id, limit)
    return [TokenUse(**dict(row)) for row in rows]


async def revoke_token(db: Database, actor: Actor, token_id: int) -> bool:
    def revoke(tx: Transaction) -> bool:
        changed = tokens_store.revoke(tx.conn, token_id, iso(actor.at))
        if changed:
            audit.record(tx.conn, actor, "token.revoked", target=f"token:{token_id}")
        return changed

    return await db.write(revoke)


def claim_seat(
    conn: sqlite3.Connection, token: str, *, now: datetime, host_tags: Sequence[str] = ()
) -> TokenInfo:
    """Inside the registration transaction: check the token (and that it lets the host
    choose tags, if it asks for any) and take one seat. Returns the token; raises
    TokenNotAccepted with one of REFUSALS."""
    try:
        secret, _ = parse_registration_token(token)
    except ProtocolError:
        raise TokenNotAccepted("malformed") from None
    row = tokens_store.by_hash(conn, hash_secret(secret))
    if row is None:
        raise TokenNotAccepted("unknown")
    info = _with_tags(conn, [row])[0]
    state = info.state(now)
    if state != "active":
        raise TokenNotAccepted(state)
    if host_tags and not info.allow_host_tags:
        raise TokenNotAccepted("host tags not allowed")
    if not tokens_store.take_seat(conn, info.id):
        raise TokenNotAccepted("used up")
    return info
