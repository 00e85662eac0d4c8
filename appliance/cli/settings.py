"""`settings list|set`: runtime settings, validated and audited."""

from __future__ import annotations

import argparse

from appliance.cli.common import (
    add_json,
    cli_actor,
    print_json,
    require_database,
    run_with_database,
    subparser,
)
from appliance.services import settings as runtime_settings
from appliance.settings import load_settings
from appliance.store.database import Database


def register(commands: argparse._SubParsersAction) -> None:
    known = "\n".join(
        f"  {spec.key:<30} default {spec.default!s:<6} {spec.help}"
        for spec in runtime_settings.SPECS.values()
    )
    parser = subparser(
        commands,
        "settings",
        "show or change runtime settings",
        "Runtime settings live in the database and take effect without a restart.\n\n"
        f"settings:\n{known}",
        "examples:\n  redflag-appliance settings list\n"
        "  redflag-appliance settings set backup_retention 30\n"
        "  redflag-appliance settings set timezone Europe/Berlin",
    )
    parser.add_argument("action", choices=["list", "set"])
    parser.add_argument("key", nargs="?", help="setting name (for set)")
    parser.add_argument("value", nargs="?", help="new value (for set)")
    add_json(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    require_database(settings)
    if args.action == "set" and (args.key is None or args.value is None):
        raise runtime_settings.InvalidSetting(
            args.key or "?", "usage: redflag-appliance settings set KEY VALUE"
        )
    values = run_with_database(settings, lambda db: _run(db, args))
    if args.json:
        print_json(values)
    else:
        for key, value in values.items():
            print(f"{key} = {value}")
    return 0


async def _run(db: Database, args: argparse.Namespace) -> dict[str, runtime_settings.Value]:
    if args.action == "set":
        await runtime_settings.change(db, cli_actor(), args.key, args.value)
        return {args.key: (await runtime_settings.current_all(db))[args.key]}
    return await runtime_settings.current_all(db)
