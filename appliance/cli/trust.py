"""`token` and `keys`: registration tokens and the signing-key hierarchy."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from appliance.cli.common import (
    CliError,
    add_json,
    cli_actor,
    command_group,
    print_json,
    run_with_database,
    subparser,
)
from appliance.durations import parse_duration
from appliance.services import tokens
from appliance.services.agent_commands import AGENT_DOCS, enrol_commands
from appliance.services.keys import KeyService, open_key_service
from appliance.settings import Settings, load_settings
from appliance.store.database import Database
from kernel.clock import utc_now
from kernel.protocol import b64encode


def register(commands: argparse._SubParsersAction) -> None:
    _register_token(commands)

    group = command_group(
        commands,
        "keys",
        "the signing keys: status, rotation, revocation",
        "The root key certifies the signing keys that sign commands; agents pin the root\n"
        "through the fingerprint in their registration token. docs/key-rotation.md has\n"
        "the procedures, including the emergency playbook for a stolen key.",
        "examples:\n  redflag-appliance keys status\n  redflag-appliance keys rotate --overlap 7d\n"
        "  redflag-appliance keys revoke abcdefghijklmnop",
    )
    for action, summary, description, example in (
        (
            "status",
            "list root and signing keys and the published key-set version",
            "Show the root key's fingerprint, the key-set version agents hold, and each\n"
            "key with its purpose, state and validity.",
            "keys status --json",
        ),
        (
            "rotate",
            "add a new signing key; the old one stays valid for --overlap",
            "Add a new signing key and publish a new key set; new commands are signed\n"
            "with it at once, and the old key keeps verifying for --overlap so that\n"
            "commands already on their way stay valid.",
            "keys rotate --overlap 7d",
        ),
        (
            "rotate-root",
            "replace the root key; the old root certifies the new one",
            "Make a new root key, certified by the old one, so agents move to it at their\n"
            "next check-in. New registration tokens carry the new fingerprint.",
            "keys rotate-root",
        ),
        (
            "revoke",
            "withdraw a signing key NOW (key stolen? see docs/key-rotation.md)",
            "Publish a key set without KEYID at once: agents refuse anything it signed\n"
            "from their next check-in on. A new signing key takes its place if needed.",
            "keys revoke abcdefghijklmnop",
        ),
        (
            "export-root",
            "print the root public key and its fingerprint",
            "Print the root public key and its fingerprint, e.g. to compare with a token.",
            "keys export-root --json",
        ),
    ):
        parser = subparser(
            group, action, summary, description, f"example:\n  redflag-appliance {example}"
        )
        if action == "revoke":
            parser.add_argument("key_id", metavar="KEYID", help="the key id, from 'keys status'")
        if action == "rotate":
            parser.add_argument(
                "--overlap", default="7d", help="how long the old key stays valid (7d)"
            )
        add_json(parser)
        parser.set_defaults(handler=run_keys)


def _register_token(commands: argparse._SubParsersAction) -> None:
    group = command_group(
        commands,
        "token",
        "registration tokens for agents",
        "Create, list and revoke registration tokens. A token is printed once and stored\n"
        "only as a hash; it carries the fingerprint of the appliance's root key, so an\n"
        "agent verifies the appliance before it trusts it.",
        "examples:\n  redflag-appliance token create --seats 10 --expires 24h --note 'rack 2'\n"
        "  redflag-appliance token list\n  redflag-appliance token revoke 3",
    )
    parser = subparser(
        group,
        "create",
        "make a registration token and print it once",
        "Make a token that lets --seats hosts register within --expires, and print it\n"
        "once with the command to run on each host. Give --server the address your\n"
        "hosts reach the appliance at, so the printed command is ready to paste.",
        "examples:\n  redflag-appliance token create --seats 10 --expires 24h --note 'rack 2'\n"
        "  redflag-appliance token create --unlimited --expires 7d "
        "--server https://redflag.lan:8080\n"
        "  redflag-appliance token create --seats 40 --tag office --tag site:berlin "
        "--no-host-tags",
    )
    parser.add_argument("--seats", type=int, help="how many hosts may use it (default 1)")
    parser.add_argument("--unlimited", action="store_true", help="no limit on hosts")
    parser.add_argument(
        "--expires", default="24h", help="lifetime, e.g. 90m, 24h, 7d (default 24h)"
    )
    parser.add_argument("--note", default="", help="what it is for, shown in lists")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="a tag every host registering with it gets (repeat for more)",
    )
    parser.add_argument(
        "--no-host-tags",
        action="store_true",
        help="refuse hosts that ask for tags of their own ('redflag-agent register --tag')",
    )
    parser.add_argument("--server", help="appliance URL to print in the agent command")
    add_json(parser)
    parser.set_defaults(handler=run_token)

    parser = subparser(
        group,
        "list",
        "show every registration token",
        "Show every token (never the token itself): its id, whether it is active, used\n"
        "up, expired or revoked, how many hosts used it, when it expires, and its note.",
        "examples:\n  redflag-appliance token list\n  redflag-appliance token list --json",
    )
    add_json(parser)
    parser.set_defaults(handler=run_token)

    parser = subparser(
        group,
        "revoke",
        "revoke a registration token",
        "Revoke a token by its id (see 'token list'): no host can register with it from\n"
        "then on. Hosts that registered with it stay registered.",
        "examples:\n  redflag-appliance token revoke 3",
    )
    parser.add_argument("token_id", type=int, metavar="TOKEN_ID", help="the token's id")
    parser.set_defaults(handler=run_token)


def _run(settings: Settings, work: Callable[[Database, KeyService], Awaitable[Any]]) -> Any:
    async def with_keys(db: Database) -> Any:
        return await work(db, await open_key_service(db, settings.key_file, initialise=True))

    return run_with_database(settings, with_keys)


def run_token(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    if args.action == "create":
        try:
            expires_in = parse_duration(args.expires)
        except ValueError as exc:
            raise CliError(f"--expires: {exc}") from None
        seats = None if args.unlimited else (args.seats or 1)

        async def create(db: Database, keys: KeyService) -> tuple[str, tokens.TokenInfo]:
            return await tokens.create_token(
                db,
                cli_actor(),
                root_fingerprint=await keys.root_fingerprint(),
                seats=seats,
                expires_in=expires_in,
                note=args.note,
                tags=args.tag,
                allow_host_tags=not args.no_host_tags,
            )

        try:
            token, info = _run(settings, create)
        except tokens.InvalidTokenRequest as exc:
            option = "--tag" if exc.field == "tags" else f"--{exc.field}"
            raise CliError(f"{option}: {exc.message}") from None
        server = args.server or f"http://APPLIANCE-ADDRESS:{settings.port}"
        if args.json:
            print_json({"token": token, **info.as_json(utc_now())})
        else:
            print(token)
            if not args.server:
                print("(use --server URL to print the address your hosts reach this on)")
            enrol = enrol_commands(server, token)
            tags = ", ".join(info.tags) or "none"
            host_tags = "allowed" if info.allow_host_tags else "refused"
            print(
                f"\nseats: {seats or 'unlimited'}, expires {info.expires_at}; it is shown "
                f"only now.\ntags: {tags}; tags of the host's own (register --tag): "
                f"{host_tags}.\nOn this host (the agent installed with the appliance):\n"
                + "".join(f"  {line}\n" for line in enrol.this_host)
                + "On other Linux hosts (x86_64, aarch64; Python 3.9+), one line that checks\n"
                + "everything it downloads against this appliance's root key:\n"
                + f"  {enrol.one_line}\n"
                + f"Or, with the agent installed by hand ({AGENT_DOCS}), as root:\n"
                + "".join(f"  {line}\n" for line in enrol.other_hosts),
                end="",
            )
        return 0
    if args.action == "list":
        found = _run(settings, lambda db, _keys: tokens.list_tokens(db))
        now = utc_now()
        if args.json:
            print_json([t.as_json(now) for t in found])
        for info in [] if args.json else found:
            seats = f"{info.seats_used}/{info.seats_total or '∞'}"
            tags = ",".join(info.tags) + ("" if info.allow_host_tags else " (fixed)")
            print(
                f"{info.id:>4}  {info.state(now):<8} seats {seats:<9} expires "
                f"{info.expires_at or 'never':<21} {info.note}"
                + (f"  tags {tags}" if info.tags or not info.allow_host_tags else "")
            )
        return 0
    revoked = _run(settings, lambda db, _k: tokens.revoke_token(db, cli_actor(), args.token_id))
    if not revoked:
        raise CliError(f"no active token {args.token_id}; 'token list' shows them")
    print(f"revoked token {args.token_id}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    action = args.action
    try:
        overlap = parse_duration(args.overlap) if action == "rotate" else timedelta(0)
    except ValueError as exc:
        raise CliError(f"--overlap: {exc}") from None

    async def work(db: Database, keys: KeyService) -> dict[str, Any]:
        if action == "rotate":
            await keys.rotate(cli_actor(), overlap=overlap)
        elif action == "rotate-root":
            await keys.rotate_root(cli_actor())
        elif action == "revoke":
            await keys.revoke(cli_actor(), args.key_id)
        elif action == "export-root":
            root = await keys.root()
            return {
                "key_id": root.key_id,
                "public_key": b64encode(root.public_key),
                "fingerprint": await keys.root_fingerprint(),
            }
        return await keys.status()

    result = _run(settings, work)
    if args.json:
        print_json(result)
    elif action == "export-root":
        print(
            f"root key {result['key_id']}\npublic key  {result['public_key']}\n"
            f"fingerprint {result['fingerprint']}"
        )
    else:
        print(
            f"key set version {result['key_set_version']}, root fingerprint "
            f"{result['root_fingerprint']}"
        )
        for key in result["keys"]:
            until = key["not_after"] or "-"
            print(f"  {key['key_id']}  {key['purpose']:<8} {key['state']:<8} until {until}")
    return 0
