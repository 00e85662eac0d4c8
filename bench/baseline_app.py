"""The baseline for the check-in benchmark: the least a check-in endpoint can do.

One Starlette endpoint, one aiosqlite upsert per request on a WAL database, served by
uvicorn with the same options as `redflag-appliance serve`. Run it as a script:

    python bench/baseline_app.py --db /tmp/baseline.db --port 8099
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# The appliance's connection pragmas (appliance/store/database.py), so that both sides
# pay the same for a commit.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)
SCHEMA = "CREATE TABLE IF NOT EXISTS last_seen (id TEXT PRIMARY KEY, seen_at TEXT, ip TEXT)"
UPSERT = (
    "INSERT INTO last_seen (id, seen_at, ip) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ'), ?) "
    "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, ip = excluded.ip"
)


def create_app(db_path: Path) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, aiosqlite.Connection]]:
        # isolation_level=None: each statement commits on its own, one thread hop each.
        conn = await aiosqlite.connect(db_path, isolation_level=None)
        for pragma in PRAGMAS:
            await conn.execute(pragma)
        await conn.execute(SCHEMA)
        try:
            yield {"db": conn}
        finally:
            await conn.close()

    async def checkin(request: Request) -> Response:
        try:
            agent_id = json.loads(await request.body())["agent_id"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"ok": False, "error": "expected {agent_id: ...}"}, 400)
        ip = request.client.host if request.client else ""
        await request.state.db.execute(UPSERT, (str(agent_id), ip))
        return JSONResponse({"poll_interval_s": 300, "commands": []})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/checkin", checkin, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file to upsert into")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(args.db),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
