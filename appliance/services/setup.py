"""First run: while no admin exists, the setup wizard creates one, once."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict
from appliance.services import audit, tokens, users
from appliance.store import sessions as sessions_store
from appliance.store import users as users_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso

FIRST_TOKEN_SEATS = 10
FIRST_TOKEN_LIFETIME = timedelta(days=1)


class SetupAlreadyDone(Conflict):
    """An admin exists: the wizard cannot run again."""


async def needs_setup(db: Database) -> bool:
    return await db.read(_needs_setup)


def _needs_setup(conn: sqlite3.Connection) -> bool:
    return sessions_store.count_admins(conn) == 0


async def complete_setup(
    db: Database, actor: Actor, username: str, password: str, *, root_fingerprint: str
) -> tuple[users.User, str, tokens.TokenInfo]:
    """Create the first admin and the first registration token, in one transaction;
    SetupAlreadyDone when any admin exists, decided inside it, so two racing wizards
    cannot both succeed. The wizard logs the new admin in, so that is their last
    login too. (admin, token text shown once, token record.)"""
    users.check_username(username)
    users.check_password(password)
    password_hash = await asyncio.to_thread(users.hash_password, password)
    token_text, create_token = tokens.prepare(
        root_fingerprint=root_fingerprint,
        seats=FIRST_TOKEN_SEATS,
        expires_in=FIRST_TOKEN_LIFETIME,
        note="created by the setup wizard",
    )

    def complete(tx: Transaction) -> tuple[users.User, tokens.TokenInfo]:
        if sessions_store.count_admins(tx.conn) > 0:
            raise SetupAlreadyDone("setup is already done; log in instead")
        if users_store.user_by_username(tx.conn, username) is not None:
            raise users.UserExists(f"a user named {username!r} already exists")
        user_id = users_store.insert_user(
            tx.conn,
            username=username,
            password_hash=password_hash,
            role="admin",
            created_at=iso(actor.at),
        )
        users_store.record_login(tx.conn, user_id, iso(actor.at))
        audit.record(
            tx.conn, actor, "setup.admin_created", target=username, details={"role": "admin"}
        )
        admin = users.user_from_row(users_store.user_by_id(tx.conn, user_id))
        who = Actor(f"user:{username}", actor.source_ip, "admin", actor.at)
        return admin, create_token(tx, who)

    admin, info = await db.write(complete)
    return admin, token_text, info
