"""`redflag-agent`: enrol this host, check in, show status."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from agent import __version__, state
from agent.client import ApplianceError
from agent.enrol import Identity, register
from agent.facts import collect_host_facts
from agent.protocol import ProtocolError
from agent.session import AgentSession, NotRegistered
from agent.trust import TrustError, TrustState

DEFAULT_STATE_DIR = "/var/lib/redflag-agent"

EPILOG = """\
examples:
  redflag-agent register --server https://redflag.lan:8080 --token rf_reg_...
  redflag-agent once
  redflag-agent status --json

The state dir comes from --state-dir, else $REDFLAG_AGENT_STATE_DIR, else
/var/lib/redflag-agent.
"""


def state_dir_from(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or os.environ.get("REDFLAG_AGENT_STATE_DIR") or DEFAULT_STATE_DIR)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redflag-agent",
        description="RedFlag agent: reports pending updates and installs approved ones.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"redflag-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, summary: str, epilog: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--state-dir", metavar="DIR", help="where the agent keeps its state")
        return sub

    sub = add(
        "register",
        "enrol this host with an appliance",
        "examples:\n  redflag-agent register --server http://10.0.0.5:8080 "
        "--token rf_reg_xxxx.yyyy\n\nThe token comes from 'redflag-appliance token "
        "create' or the web UI. It carries the appliance's key fingerprint, so the "
        "agent verifies the appliance before it trusts it.",
    )
    sub.add_argument("--server", required=True, help="the appliance's URL")
    sub.add_argument("--token", required=True, help="a registration token")
    sub.set_defaults(handler=cmd_register)

    sub = add(
        "once",
        "check in once: fetch keys, run commands, report; then exit",
        "examples:\n  redflag-agent once",
    )
    sub.set_defaults(handler=cmd_once)

    sub = add(
        "status",
        "show identity, server and trust state",
        "examples:\n  redflag-agent status\n  redflag-agent status --json",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(handler=cmd_status)
    return parser


def cmd_register(args: argparse.Namespace) -> int:
    directory = state_dir_from(args)
    identity, created = register(directory, args.server, args.token, collect_host_facts())
    verb = "registered as" if created else "already registered as"
    print(f"{verb} agent {identity.agent_id} with {identity.server}")
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    session = AgentSession(state_dir_from(args))
    try:
        outcome = session.check_in(collect_host_facts())
    finally:
        session.close()
    print(f"checked in: {len(outcome.ran)} command(s) run, {len(outcome.rejected)} rejected")
    for rejected in outcome.rejected:
        print(f"  rejected: {rejected}")
    if outcome.trust_error:
        print(f"  key set refused: {outcome.trust_error}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    directory = state_dir_from(args)
    identity = Identity.load(directory)
    trust_raw = state.read_json(directory, state.TRUST_FILE)
    if identity is None or trust_raw is None:
        raise NotRegistered(f"{directory} holds no registration; run 'redflag-agent register'")
    trust = TrustState.from_json(trust_raw)
    status = {
        "agent_id": identity.agent_id,
        "server": identity.server,
        "state_dir": str(directory),
        "root_key_id": trust.root_key_id,
        "key_set_version": trust.key_set_version,
        "last_command_seq": trust.last_seq,
    }
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for name, value in status.items():
            print(f"{name:<18} {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ProtocolError, TrustError, ApplianceError, NotRegistered, state.StateError) as exc:
        print(f"redflag-agent: error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"redflag-agent: error: cannot reach the appliance: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"redflag-agent: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
