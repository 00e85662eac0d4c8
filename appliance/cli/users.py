"""`user create|passwd|list` and `api-token create|list|revoke`: dashboard users and
the API tokens that act for them."""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TypeVar

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
from appliance.services import api_tokens, users
from appliance.settings import load_settings
from appliance.store.database import Database

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]

ROLES_HELP = """\
roles (each may do everything the ones below it may):
  admin     users, API tokens, keys, settings, backups
  operator  approve and install updates, manage agents
  viewer    look at everything, change nothing"""

PASSWORD_HELP = (
    f"A password needs at least {users.MIN_PASSWORD_CHARS} characters. It is asked for\n"
    "twice on the terminal; in scripts, pipe it in with --password-stdin (one line)."
)


def register(commands: argparse._SubParsersAction) -> None:
    _register_user(commands)
    _register_api_token(commands)


def _register_user(commands: argparse._SubParsersAction) -> None:
    group = command_group(
        commands,
        "user",
        "manage dashboard users",
        "Users log in to the web UI and own API tokens.\n\n" + ROLES_HELP,
        "examples:\n  redflag-appliance user create alice --role admin\n"
        "  redflag-appliance user list",
    )
    parser = subparser(
        group,
        "create",
        "add a user",
        f"Add a dashboard user with a role.\n\n{PASSWORD_HELP}\n\n{ROLES_HELP}",
        "examples:\n  redflag-appliance user create alice --role admin\n"
        "  printf '%s\\n' \"$PASSWORD\" | redflag-appliance user create ci-bot "
        "--role viewer --password-stdin",
    )
    parser.add_argument("username", help="1-64 letters, digits and . _ @ -")
    parser.add_argument("--role", required=True, metavar="ROLE", help="admin, operator or viewer")
    _add_password_stdin(parser)
    parser.set_defaults(handler=run_user_create)

    parser = subparser(
        group,
        "passwd",
        "set a user's password",
        f"Set a new password for a user; this also lifts a login lockout.\n\n{PASSWORD_HELP}",
        "examples:\n  redflag-appliance user passwd alice\n"
        "  redflag-appliance user passwd alice --password-stdin < new-password.txt",
    )
    parser.add_argument("username")
    _add_password_stdin(parser)
    parser.set_defaults(handler=run_user_passwd)

    parser = subparser(
        group,
        "list",
        "show every user",
        "Show every user with their role, whether they are active, disabled or locked\n"
        "out after too many wrong passwords, and when they last logged in.",
        "examples:\n  redflag-appliance user list\n  redflag-appliance user list --json",
    )
    add_json(parser)
    parser.set_defaults(handler=run_user_list)


def _register_api_token(commands: argparse._SubParsersAction) -> None:
    group = command_group(
        commands,
        "api-token",
        "manage API tokens for the admin JSON API",
        "An API token acts for one user, with that user's role, on /api/v1/...:\n"
        "  curl -H 'Authorization: Bearer rf_api_...' http://HOST:8080/api/v1/...\n"
        "Only a hash of each token is stored: it is shown once, when created.",
        "examples:\n  redflag-appliance api-token create --user alice --name ci --expires 30d\n"
        "  redflag-appliance api-token list\n  redflag-appliance api-token revoke 3",
    )
    parser = subparser(
        group,
        "create",
        "make a new API token and print it once",
        "Make a token that acts as the --user and print it on stdout. It cannot be shown\n"
        "again: store it in your secret manager right away.",
        "examples:\n  redflag-appliance api-token create --user alice --name laptop\n"
        "  TOKEN=$(redflag-appliance api-token create --user ci-bot --name deploy "
        "--expires 90d)",
    )
    parser.add_argument("--user", required=True, metavar="USERNAME", help="who it acts as")
    parser.add_argument("--name", required=True, help="where it is used, e.g. 'ci' or 'laptop'")
    parser.add_argument(
        "--expires",
        metavar="DURATION",
        help="lifetime like 90m, 12h, 30d or 2w (default: never expires)",
    )
    parser.set_defaults(handler=run_api_token_create)

    parser = subparser(
        group,
        "list",
        "show API tokens",
        "Show every API token (never the token itself): its id, user, name, whether it\n"
        "is active, expired or revoked, and when it was last used.",
        "examples:\n  redflag-appliance api-token list\n"
        "  redflag-appliance api-token list --user alice --json",
    )
    parser.add_argument("--user", metavar="USERNAME", help="only this user's tokens")
    add_json(parser)
    parser.set_defaults(handler=run_api_token_list)

    parser = subparser(
        group,
        "revoke",
        "revoke an API token",
        "Revoke a token by its id (see 'api-token list'); it is refused from then on.",
        "examples:\n  redflag-appliance api-token revoke 3",
    )
    parser.add_argument("id", type=int, help="the token's id")
    parser.set_defaults(handler=run_api_token_revoke)


def _one_line_errors(handler: Handler) -> Handler:
    """The service's refusals (bad role, short password, unknown user...) become a
    one-line error and exit code 1."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except users.UserError as exc:
            raise CliError(str(exc)) from None

    return run


@_one_line_errors
def run_user_create(args: argparse.Namespace) -> int:
    users.check_username(args.username)
    users.check_role(args.role)
    if _with_database(args, lambda db: users.user_exists(db, args.username)):
        raise users.UserExists(f"a user named {args.username!r} already exists")
    password = _new_password(args)
    user = _with_database(
        args,
        lambda db: users.create_user(db, cli_actor(), args.username, password, args.role),
    )
    print(f"created user {user.username} ({user.role})")
    return 0


@_one_line_errors
def run_user_passwd(args: argparse.Namespace) -> int:
    if not _with_database(args, lambda db: users.user_exists(db, args.username)):
        raise users.UserNotFound(f"there is no user named {args.username!r}")
    password = _new_password(args)
    _with_database(args, lambda db: users.change_password(db, cli_actor(), args.username, password))
    print(f"changed the password of {args.username}")
    return 0


@_one_line_errors
def run_user_list(args: argparse.Namespace) -> int:
    found = _with_database(args, users.list_users)
    now = datetime.now(UTC)
    if args.json:
        print_json([{**asdict(user), "state": _user_state(user, now)} for user in found])
        return 0
    if not found:
        print("no users yet; add one with 'redflag-appliance user create NAME --role admin'")
        return 0
    _print_table(
        ["USERNAME", "ROLE", "STATE", "CREATED", "LAST LOGIN"],
        [
            [u.username, u.role, _user_state(u, now), u.created_at, u.last_login_at or "never"]
            for u in found
        ],
    )
    return 0


@_one_line_errors
def run_api_token_create(args: argparse.Namespace) -> int:
    try:
        expires_in = parse_duration(args.expires) if args.expires is not None else None
    except ValueError as exc:
        raise CliError(f"--expires: {exc}") from None
    token = _with_database(
        args,
        lambda db: api_tokens.create_api_token(
            db, cli_actor(), args.user, args.name, expires_in=expires_in
        ),
    )
    print(token)
    # On stderr, so that TOKEN=$(...) captures the token alone.
    print(
        "redflag-appliance: this token will not be shown again; store it now",
        file=sys.stderr,
    )
    return 0


@_one_line_errors
def run_api_token_list(args: argparse.Namespace) -> int:
    found = _with_database(args, lambda db: api_tokens.list_api_tokens(db, args.user))
    now = datetime.now(UTC)
    if args.json:
        print_json([{**asdict(token), "state": token.state(now)} for token in found])
        return 0
    if not found:
        print("no API tokens yet; make one with 'redflag-appliance api-token create'")
        return 0
    _print_table(
        ["ID", "USER", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED"],
        [
            [
                str(t.id),
                t.username,
                t.name,
                t.state(now),
                t.created_at,
                t.expires_at or "never",
                t.last_used_at or "never",
            ]
            for t in found
        ],
    )
    return 0


@_one_line_errors
def run_api_token_revoke(args: argparse.Namespace) -> int:
    token = _with_database(args, lambda db: api_tokens.revoke_api_token(db, cli_actor(), args.id))
    print(f"revoked API token {token.id} ({token.name!r} of {token.username})")
    return 0


def _add_password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of asking on the terminal",
    )


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # One line; a longer input is cut just past the limit so that it is refused.
        text = sys.stdin.read(users.MAX_PASSWORD_CHARS + 2)
        password = text.removesuffix("\n").removesuffix("\r")
    elif not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password on; use --password-stdin", 2)
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise CliError("the two passwords differ; nothing was changed")
    users.check_password(password)
    return password


def _with_database(args: argparse.Namespace, work: Callable[[Database], Awaitable[T]]) -> T:
    return run_with_database(load_settings({"data_dir": args.data_dir}), work)


def _user_state(user: users.User, now: datetime) -> str:
    if user.disabled:
        return "disabled"
    if user.is_locked(now):
        return f"locked until {user.locked_until}"
    return "active"


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
