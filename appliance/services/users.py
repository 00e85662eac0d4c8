"""Dashboard users: roles, passwords and login lockout. Passwords are kept only as
argon2id hashes. The API tokens that act for users are in `api_tokens`."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sqlite3
import unicodedata
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cache

import nacl.exceptions
from nacl.pwhash import argon2id

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, DomainError, Invalid, NotFound
from appliance.services import audit
from appliance.store import sessions as sessions_store
from appliance.store import users as users_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, parse_iso, utc_now
from kernel.logs import log_event

logger = logging.getLogger("redflag.users")

# A higher role may do everything a lower one may.
ROLE_RANK = {"admin": 3, "operator": 2, "viewer": 1}
ROLES = tuple(ROLE_RANK)  # highest first

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)

# argon2id at libsodium's INTERACTIVE limits (2 passes over 64 MiB, about 0.1-0.2 s)
# is above OWASP's argon2id minimum (19 MiB, 2 passes). MODERATE (256 MiB, ~1 s) would
# let a handful of concurrent logins exhaust a small appliance's memory, and would make
# the test suite crawl. The limits are stored in each hash, so raising them later still
# verifies every existing one.
PASSWORD_OPSLIMIT = argon2id.OPSLIMIT_INTERACTIVE
PASSWORD_MEMLIMIT = argon2id.MEMLIMIT_INTERACTIVE


class UserError(DomainError):
    """A request about users or API tokens that cannot be carried out; says why. Each
    kind below is also the kind of error it is (invalid, not found, conflict)."""


class InvalidUsername(UserError, Invalid):
    def __init__(self, message: str):
        super().__init__(message, "username")


class InvalidPassword(UserError, Invalid):
    def __init__(self, message: str):
        super().__init__(message, "password")


class InvalidRole(UserError, Invalid):
    def __init__(self, message: str):
        super().__init__(message, "role")


class UserExists(UserError, Conflict):
    pass


class UserNotFound(UserError, NotFound):
    pass


class UserDisabled(UserError, Conflict):
    pass


class LastAdmin(UserError, Conflict):
    """Disabling this user would leave no enabled admin to manage the appliance."""


class LoginFailed(Exception):
    """Wrong username or password, or a locked or disabled account. Deliberately one
    error with one message, so that a caller cannot learn which."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    failed_logins: int
    locked_until: str | None
    created_at: str
    last_login_at: str | None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and parse_iso(self.locked_until) > now


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and how they proved it."""

    user_id: int
    username: str
    role: str
    via: str = "api_token"


def role_allows(role: str, needed: str) -> bool:
    """Whether `role` may do what needs `needed`: admin > operator > viewer."""
    if needed not in ROLE_RANK:
        raise InvalidRole(f"unknown role {needed!r}; roles: {', '.join(ROLES)}")
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]


def check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidUsername(
            f"username {username[:80]!r} is not allowed; use 1-64 letters, digits "
            "and . _ @ - (no spaces)"
        )


def check_role(role: str) -> None:
    if role not in ROLE_RANK:
        raise InvalidRole(f"unknown role {role[:40]!r}; choose one of {', '.join(ROLES)}")


def check_password(password: str) -> None:
    """The rules for a new password; the message never repeats the password."""
    length = len(_normalised(password))
    if length < MIN_PASSWORD_CHARS:
        raise InvalidPassword(
            f"the password is too short; use at least {MIN_PASSWORD_CHARS} characters "
            "(a few random words make a good one)"
        )
    if length > MAX_PASSWORD_CHARS:
        raise InvalidPassword(f"the password is longer than {MAX_PASSWORD_CHARS} characters")
    if any(unicodedata.category(char) == "Cc" for char in password):
        raise InvalidPassword("the password must not contain control characters or line breaks")


def hash_password(password: str) -> str:
    """An argon2id hash string with its own salt and limits. Slow: run it in a thread."""
    hashed = argon2id.str(
        _normalised(password).encode(), opslimit=PASSWORD_OPSLIMIT, memlimit=PASSWORD_MEMLIMIT
    )
    return hashed.decode("ascii")


def password_matches(password_hash: str, password: str) -> bool:
    """Slow like `hash_password`, on purpose: run it in a thread."""
    try:
        return argon2id.verify(password_hash.encode("ascii"), _normalised(password).encode())
    except nacl.exceptions.CryptoError:  # a mismatch, or a hash it cannot read
        return False


async def create_user(db: Database, actor: Actor, username: str, password: str, role: str) -> User:
    check_username(username)
    check_role(role)
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)

    def create(tx: Transaction) -> User:
        if users_store.user_by_username(tx.conn, username) is not None:
            raise UserExists(f"a user named {username!r} already exists")
        user_id = users_store.insert_user(
            tx.conn,
            username=username,
            password_hash=password_hash,
            role=role,
            created_at=iso(actor.at),
        )
        audit.record(tx.conn, actor, "user.created", target=username, details={"role": role})
        return user_from_row(users_store.user_by_id(tx.conn, user_id))

    return await db.write(create)


async def change_password(db: Database, actor: Actor, username: str, new_password: str) -> None:
    """Set a new password; this also lifts a login lockout."""
    check_password(new_password)
    password_hash = await asyncio.to_thread(hash_password, new_password)

    def change(tx: Transaction) -> None:
        user = existing_user(tx.conn, username)
        users_store.set_password_hash(tx.conn, user.id, password_hash)
        users_store.reset_failed_logins(tx.conn, user.id)
        # Whoever held a session with the old password is logged out.
        sessions_store.delete_sessions_of_user(tx.conn, user.id)
        audit.record(tx.conn, actor, "user.password_changed", target=user.username)

    await db.write(change)


async def set_user_disabled(db: Database, actor: Actor, username: str, disabled: bool) -> User:
    """Disable (or enable again) a user: a disabled user can neither log in nor use
    their API tokens, but keeps them and their history. The last enabled admin cannot
    be disabled."""

    def change(tx: Transaction) -> User:
        user = existing_user(tx.conn, username)
        if (
            disabled
            and user.role == "admin"
            and not user.disabled
            and sessions_store.count_admins(tx.conn) <= 1
        ):
            raise LastAdmin(
                f"{user.username!r} is the only enabled admin; make another admin first"
            )
        users_store.set_disabled(tx.conn, user.id, disabled)
        audit.record(
            tx.conn, actor, "user.disabled" if disabled else "user.enabled", target=user.username
        )
        return user_from_row(users_store.user_by_id(tx.conn, user.id))

    return await db.write(change)


async def user_exists(db: Database, username: str) -> bool:
    return await db.read(_user_exists, username)


def _user_exists(conn: sqlite3.Connection, username: str) -> bool:
    return users_store.user_by_username(conn, username) is not None


async def list_users(db: Database) -> list[User]:
    return await db.read(_list_users)


def _list_users(conn: sqlite3.Connection) -> list[User]:
    return [user_from_row(row) for row in users_store.all_users(conn)]


async def verify_password(
    db: Database,
    username: str,
    password: str,
    source_ip: str = "",
    *,
    now: datetime | None = None,
    max_failures: int = MAX_FAILED_LOGINS,
    lock_for: timedelta = LOCKOUT,
) -> User:
    """The user, when `password` is theirs and the account is neither locked nor
    disabled; else LoginFailed, whatever the reason. After `max_failures` wrong
    passwords in a row the account is locked for `lock_for`."""
    moment = now or utc_now()
    row = await db.read(users_store.user_by_username, username)
    # Unknown users cost one argon2 run too, so that timing does not tell them apart.
    checked_hash = row["password_hash"] if row else await asyncio.to_thread(_dummy_hash)
    matches = await asyncio.to_thread(password_matches, checked_hash, password)
    attempt = Actor("anonymous", source_ip, None, moment)
    outcome = await db.write(
        _settle_login, attempt, username, checked_hash, matches, max_failures, lock_for
    )
    if isinstance(outcome, User):
        return outcome
    reason, locked_until = outcome
    log_event(
        logger,
        logging.WARNING if locked_until else logging.INFO,
        "user.locked" if locked_until else "user.login_failed",
        username=username,
        source_ip=source_ip,
        reason=reason,
        locked_until=locked_until,
    )
    raise LoginFailed()


def _settle_login(
    tx: Transaction,
    attempt: Actor,
    username: str,
    checked_hash: str,
    matches: bool,
    max_failures: int,
    lock_for: timedelta,
) -> User | tuple[str, str | None]:
    """The logged-in user, or (why not, the lock's end if it locked the account).
    Read again: a concurrent attempt may have counted a failure or locked it since."""
    row = users_store.user_by_username(tx.conn, username)
    user = user_from_row(row) if row else None
    if user is None:
        reason = "unknown user"
    elif user.disabled:
        reason = "disabled"
    elif user.is_locked(attempt.at):
        reason = "locked"
    elif not matches or row["password_hash"] != checked_hash:
        reason = "wrong password"
    else:
        users_store.record_login(tx.conn, user.id, iso(attempt.at))
        who = Actor(f"user:{user.username}", attempt.source_ip, user.role, attempt.at)
        audit.record(tx.conn, who, "user.logged_in", target=user.username)
        return user_from_row(users_store.user_by_id(tx.conn, user.id))
    details: dict[str, object] = {"reason": reason}
    locked_until = None
    if user is not None and reason == "wrong password":
        failures = users_store.record_failed_login(tx.conn, user.id)
        details["failed_logins"] = failures
        if failures >= max_failures:
            locked_until = iso(attempt.at + lock_for)
            users_store.lock_user(tx.conn, user.id, locked_until)
    # The attempted name is kept (the audit log sanitises it), never the password.
    audit.record(tx.conn, attempt, "user.login_failed", target=username, details=details)
    if locked_until is not None:
        system = Actor("system", attempt.source_ip, None, attempt.at)
        audit.record(
            tx.conn,
            system,
            "user.locked",
            target=username,
            details={"until": locked_until, "after_failures": details["failed_logins"]},
        )
        tx.emit(
            "login.locked",
            username,
            {"until": locked_until, "source_ip": attempt.source_ip},
            iso(attempt.at),
        )
    return reason, locked_until


def _normalised(password: str) -> str:
    # NFKC, as NIST SP 800-63B advises: the same password typed on another keyboard or
    # system (composed or decomposed accents, full-width digits) still matches.
    return unicodedata.normalize("NFKC", password)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def existing_user(conn: sqlite3.Connection, username: str) -> User:
    row = users_store.user_by_username(conn, username)
    if row is None:
        raise UserNotFound(f"there is no user named {username[:80]!r}")
    return user_from_row(row)


def user_from_row(row: sqlite3.Row | None) -> User:
    assert row is not None
    values = {column.name: row[column.name] for column in fields(User)}
    return User(**{**values, "disabled": bool(row["disabled"])})
