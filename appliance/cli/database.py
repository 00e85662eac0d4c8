"""`migrate`, `backup` and `restore`: the database's life cycle."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import apsw

from appliance.cli.common import (
    CliError,
    add_json,
    cli_actor,
    print_json,
    require_database,
    run_with_database,
    subparser,
)
from appliance.lockfile import DataDirLock
from appliance.services import audit, backups
from appliance.settings import Settings, load_settings
from appliance.store.database import Database
from appliance.store.migrations import load_migrations, migrate, plan_migrations
from appliance.store.snapshot import write_snapshot


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands,
        "migrate",
        "apply or show schema migrations",
        "Bring the database to this version's schema. A verified snapshot is written to\n"
        "DATA/backups first; all pending migrations commit together or not at all.\n"
        "'serve' does this by itself; use this command to look before you leap.",
        "examples:\n  redflag-appliance migrate --status\n  redflag-appliance migrate --dry-run\n"
        "  redflag-appliance migrate",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="show applied and pending ones")
    mode.add_argument("--dry-run", action="store_true", help="apply them to a throw-away copy only")
    add_json(parser)
    parser.set_defaults(handler=run_migrate)

    parser = subparser(
        commands,
        "backup",
        "write a consistent snapshot of the database",
        "Write a verified snapshot of the live database (safe while the appliance runs)\n"
        "and print its path. The appliance also takes one daily (setting\n"
        "backup_interval_hours) and keeps backup_retention of them.",
        "examples:\n  redflag-appliance backup\n"
        "  redflag-appliance backup --output /mnt/usb/redflag-before-upgrade.db",
    )
    parser.add_argument("--output", metavar="FILE", type=Path, help="where to write it")
    parser.set_defaults(handler=run_backup)

    parser = subparser(
        commands,
        "restore",
        "replace the database with a backup",
        "Verify FILE (integrity, a RedFlag schema no newer than this version), keep the\n"
        "current database as DATA/backups/pre-restore-*.db, and swap FILE in atomically.\n"
        "Stop the appliance first: restore refuses while it runs.",
        "examples:\n  redflag-appliance restore data/backups/redflag-20261129T020000000000Z.db\n"
        "  redflag-appliance restore /mnt/usb/redflag.db --yes",
    )
    parser.add_argument("file", type=Path, help="the backup to restore")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=run_restore)


def run_migrate(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    migrations = load_migrations()
    if args.status:
        return _print_status(settings, args.json)
    if args.dry_run:
        return _dry_run(settings, args.json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with DataDirLock(settings.lock_path, purpose="migrate"):
        result = migrate(settings.database_path, settings.backups_dir, migrations)
    if args.json:
        print_json(
            {
                "from_version": result.from_version,
                "to_version": result.to_version,
                "applied": [m.label for m in result.applied],
                "snapshot": str(result.snapshot) if result.snapshot else None,
            }
        )
    elif not result.applied:
        print(f"Nothing to do: the schema is at version {result.to_version}, the newest.")
    else:
        for migration in result.applied:
            print(f"applied {migration.label}")
        if result.snapshot:
            print(f"snapshot taken before: {result.snapshot}")
        print(f"Schema migrated from version {result.from_version} to {result.to_version}.")
    return 0


def _print_status(settings: Settings, as_json: bool) -> int:
    require_database(settings)
    migrations = load_migrations()
    conn = apsw.Connection(str(settings.database_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        plan = plan_migrations(conn, migrations)
    finally:
        conn.close()
    applied = {a.version: a for a in plan.applied}
    rows = [
        {
            "version": m.version,
            "name": m.name,
            "applied_at": applied[m.version].applied_at if m.version in applied else None,
        }
        for m in migrations
    ]
    if as_json:
        print_json(
            {
                "current_version": plan.current_version,
                "head_version": plan.head_version,
                "pending": len(plan.pending),
                "migrations": rows,
            }
        )
        return 0
    print(f"database: {settings.database_path}")
    print(f"schema version {plan.current_version}, newest known {plan.head_version}")
    for row in rows:
        state = f"applied {row['applied_at']}" if row["applied_at"] else "PENDING"
        print(f"  {row['version']:04d}_{row['name']:<40} {state}")
    if plan.pending:
        print(f"{len(plan.pending)} pending; 'redflag-appliance migrate' applies them.")
    return 0


def _dry_run(settings: Settings, as_json: bool) -> int:
    require_database(settings)
    with tempfile.TemporaryDirectory(prefix="redflag-dry-run-") as scratch:
        copy = write_snapshot(settings.database_path, Path(scratch) / "copy.db")
        result = migrate(copy, Path(scratch) / "backups")
    if as_json:
        print_json(
            {
                "from_version": result.from_version,
                "to_version": result.to_version,
                "would_apply": [m.label for m in result.applied],
            }
        )
    elif result.applied:
        names = ", ".join(m.label for m in result.applied)
        print(
            f"Dry run OK on a copy: {names} would take the schema from version "
            f"{result.from_version} to {result.to_version}. Nothing was changed."
        )
    else:
        print(f"Dry run: nothing to do, the schema is at version {result.to_version}.")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    require_database(settings)
    path = backups.create_backup(settings, args.output)
    print(path)
    return 0


def run_restore(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    source: Path = args.file.resolve()
    version = backups.verify_backup(source)
    print(f"{source}: a RedFlag database at schema version {version}, integrity ok.")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("restore replaces the live database; re-run with --yes", 2)
        answer = input(f"Replace {settings.database_path} with it? Type 'restore': ")
        if answer.strip() != "restore":
            raise CliError("cancelled; nothing was changed", 1)
    result = backups.restore_backup(settings, source)
    run_with_database(settings, lambda db: _audit_restore(db, result))
    if result.safety_copy:
        print(f"kept the previous database as {result.safety_copy}")
    print(f"restored {settings.database_path} from {source} (schema version {version}).")
    if version < len(load_migrations()):
        print("It is older than this RedFlag; 'serve' will migrate it (after a snapshot).")
    return 0


async def _audit_restore(db: Database, result: backups.RestoreResult) -> None:
    await audit.append(
        db,
        cli_actor(),
        "backup.restored",
        target=str(result.restored_from),
        details={"safety_copy": str(result.safety_copy) if result.safety_copy else None},
    )
