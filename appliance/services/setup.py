"""First run: while no admin exists, the setup wizard creates one, once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from appliance.services import audit, tokens, users
from appliance.store import sessions as sessions_store
from appliance.store import users as users_store
from appliance.store.database import Database
from kernel.clock import iso, utc_now

FIRST_TOKEN_SEATS = 10
FIRST_TOKEN_LIFETIME = timedelta(days=1)


class SetupAlreadyDone(Exception):
    """An admin exists: the wizard cannot run again."""


async def needs_setup(db: Database) -> bool:
    async with db.read() as conn:
        return await sessions_store.count_admins(conn) == 0


async def create_first_admin(
    db: Database,
    username: str,
    password: str,
    *,
    source_ip: str = "",
    now: datetime | None = None,
) -> users.User:
    """Create the first admin; SetupAlreadyDone when any admin exists, decided inside
    the same write transaction, so two racing wizards cannot both succeed. The wizard
    logs the new admin in, so that is their last login too."""
    users.check_username(username)
    users.check_password(password)
    password_hash = await asyncio.to_thread(users.hash_password, password)
    moment = now or utc_now()
    async with db.write() as conn:
        if await sessions_store.count_admins(conn) > 0:
            raise SetupAlreadyDone("setup is already done; log in instead")
        if await users_store.user_by_username(conn, username) is not None:
            raise users.UserExists(f"a user named {username!r} already exists")
        user_id = await users_store.insert_user(
            conn,
            username=username,
            password_hash=password_hash,
            role="admin",
            created_at=iso(moment),
        )
        await users_store.record_login(conn, user_id, iso(moment))
        await audit.record(
            conn,
            actor="setup",
            action="setup.admin_created",
            target=username,
            source_ip=source_ip,
            details={"role": "admin"},
            now=moment,
        )
        row = await users_store.user_by_id(conn, user_id)
    return users.user_from_row(row)


async def create_first_token(
    db: Database, *, root_fingerprint: str, actor: str, source_ip: str = ""
) -> tuple[str, tokens.TokenInfo]:
    return await tokens.create_token(
        db,
        root_fingerprint=root_fingerprint,
        seats=FIRST_TOKEN_SEATS,
        expires_in=FIRST_TOKEN_LIFETIME,
        note="created by the setup wizard",
        actor=actor,
        source_ip=source_ip,
    )
