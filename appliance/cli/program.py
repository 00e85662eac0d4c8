"""The `redflag-appliance` program: its parser, with every operator command (one module
per group of subcommands), and how an error leaves it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from appliance import __version__
from appliance.cli import audit, database, doctor, releases, serve, settings, trust, users
from appliance.cli.common import EXPECTED_ERRORS, CliError, fail
from appliance.domain.errors import Invalid
from appliance.file_modes import make_new_files_private

DESCRIPTION = """\
RedFlag appliance: web UI, JSON API, scheduler and embedded SQLite in one process.

The data dir comes from --data-dir, else $REDFLAG_DATA_DIR, else ./data.
"""

EPILOG = """\
examples:
  redflag-appliance serve --data-dir /var/lib/redflag
  redflag-appliance migrate --status
  redflag-appliance backup --output /mnt/usb/redflag.db
  redflag-appliance doctor

Run 'redflag-appliance COMMAND --help' for each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redflag-appliance",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"redflag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, database, trust, releases, users, doctor, audit, settings):
        module.register(commands)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    make_new_files_private()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        return fail(str(exc), exc.exit_code)
    except EXPECTED_ERRORS as exc:
        return fail(exc.described if isinstance(exc, Invalid) else str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
