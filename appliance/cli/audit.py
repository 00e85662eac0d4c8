"""`audit verify`: check the audit log's hash chain."""

from __future__ import annotations

import argparse

from appliance.cli.common import (
    add_json,
    print_json,
    require_database,
    subparser,
)
from appliance.services import audit
from appliance.settings import load_settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands,
        "audit",
        "inspect the audit log",
        "The audit log is append-only and hash-chained: every row carries the hash of\n"
        "the one before it. 'verify' recomputes the chain and names every row that was\n"
        "edited, deleted or slipped in; exit code 1 when the chain is broken.",
        "examples:\n  redflag-appliance audit verify\n  redflag-appliance audit verify --json",
    )
    parser.add_argument("action", choices=["verify"], help="what to do")
    add_json(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    require_database(settings)
    report = audit.verify_chain(settings.database_path)
    if args.json:
        print_json(
            {"ok": report.ok, "rows_checked": report.rows_checked, "problems": report.problems}
        )
    elif report.ok:
        print(f"audit log intact: {report.rows_checked} rows, chain verified")
    else:
        print(
            f"AUDIT LOG TAMPERED: {len(report.problems)} problem(s) in {report.rows_checked} rows:"
        )
        for problem in report.problems:
            print(f"  {problem}")
    return 0 if report.ok else 1
