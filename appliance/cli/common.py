"""What every subcommand shares: the --data-dir option, errors and output."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from appliance.domain.actors import Actor
from appliance.domain.errors import DomainError
from appliance.lockfile import DataDirLocked
from appliance.services.backups import InvalidBackup
from appliance.services.keys import KeyOperationRefused, UnknownKey
from appliance.services.settings import InvalidSetting
from appliance.settings import Settings, SettingsError, load_settings
from appliance.signers import KeyFileError
from appliance.store.database import Database
from appliance.store.migrations import MigrationError
from appliance.store.snapshot import SnapshotFailed

T = TypeVar("T")


class CliError(Exception):
    """A one-line message for the operator, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


EXPECTED_ERRORS = (
    DomainError,  # a use case refused: not found, invalid input, a conflict
    SettingsError,
    MigrationError,
    DataDirLocked,
    InvalidBackup,
    InvalidSetting,
    KeyFileError,
    KeyOperationRefused,
    UnknownKey,
    SnapshotFailed,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
)


def cli_actor() -> Actor:
    """Who acts when an operator runs a command: the audit log says "cli"."""
    return Actor.system("cli")


def fail(message: str, exit_code: int = 1) -> int:
    print(f"redflag-appliance: error: {message}", file=sys.stderr)
    return exit_code


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: $REDFLAG_DATA_DIR, else ./data)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings({"data_dir": args.data_dir, **extra})


def require_database(settings: Settings) -> None:
    if not settings.database_path.exists():
        raise CliError(
            f"no database at {settings.database_path}; check --data-dir, or run "
            "'redflag-appliance migrate' to create one"
        )


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one piece of async work on a connection of its own, then close it."""
    require_database(settings)

    async def run() -> T:
        db = await Database.open(settings.database_path)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def command_group(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str
) -> argparse._SubParsersAction:
    """A command whose actions are subcommands of their own, each with its own help
    and --data-dir (`subparser` adds them)."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True)


def subparser(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(parser)
    return parser
