"""`release`: publish agent releases to the appliance's TUF repository."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
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
from appliance.distribution import wheelhouse
from appliance.distribution.wheelhouse import PLATFORM_TAGS, PYTHONS
from appliance.domain.errors import DomainError
from appliance.services.keys import open_key_service
from appliance.services.releases import ROLES, ReleaseRepository
from appliance.settings import Settings, load_settings
from appliance.store.database import Database


def register(commands: argparse._SubParsersAction) -> None:
    group = command_group(
        commands,
        "release",
        "agent releases: publish, list, withdraw, rotate their keys",
        "The appliance serves agent releases as a TUF repository (The Update Framework):\n"
        "every file is listed in metadata signed with keys of their own, which agents\n"
        "verify before they use anything. docs/releases.md has the procedures.",
        "examples:\n"
        "  redflag-appliance release publish dist/redflag-agent-1.4.0.tar.gz --version 1.4.0\n"
        "  redflag-appliance release list\n"
        "  redflag-appliance release rotate-key timestamp",
    )
    parser = subparser(
        group,
        "publish",
        "add a release file to a channel",
        "Store FILE under its SHA-256 and list it in newly signed metadata. A version is\n"
        "published once per channel and platform: to fix a release, publish a newer one.",
        "example:\n  redflag-appliance release publish agent.tar.gz --version 1.4.0 "
        "--channel stable --platform linux-x86_64",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help=".tar.gz, .whl or .zip")
    parser.add_argument(
        "--version", help="the agent version it holds (read from an agent build if not given)"
    )
    parser.add_argument("--channel", default="stable", help="channel, e.g. stable, beta (stable)")
    parser.add_argument(
        "--platform",
        help="any, linux-x86_64, linux-aarch64, … (an agent build's own, else any)",
    )
    parser.add_argument(
        "--if-new",
        action="store_true",
        help="say so and succeed when this version is already published (for scripts)",
    )
    add_json(parser)
    parser.set_defaults(handler=run_release)

    parser = subparser(
        group,
        "build",
        "build the agent for hosts with no internet, and publish it",
        "Build the agent for each --platform from a RedFlag checkout: its wheel and every\n"
        "wheel it needs, for Python 3.9 to 3.13, in one file (PyPI must be reachable\n"
        "now; the hosts need only the appliance). With --publish, publish each build on\n"
        "--channel, ready for the one-line installer.",
        "example:\n  redflag-appliance release build --publish\n"
        "  redflag-appliance release build --platform linux-x86_64 --output dist/",
    )
    parser.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORM_TAGS),
        help="repeatable (default: every platform)",
    )
    parser.add_argument(
        "--python", action="append", choices=PYTHONS, help="repeatable (default: all)"
    )
    parser.add_argument(
        "--project", type=Path, default=Path.cwd(), help="the checkout (current directory)"
    )
    parser.add_argument("--output", type=Path, default=Path("dist"), help="where builds go")
    parser.add_argument("--publish", action="store_true", help="publish each build")
    parser.add_argument("--channel", default="stable", help="with --publish (stable)")
    add_json(parser)
    parser.set_defaults(handler=run_release)

    parser = subparser(
        group,
        "list",
        "show the releases and when the signed metadata expires",
        "Show every release (withdrawn ones too) and each TUF role's metadata version and\n"
        "expiry. The appliance renews them itself; an expiry within 12 hours means the\n"
        "renewal is failing (see the appliance log).",
        "examples:\n  redflag-appliance release list\n  redflag-appliance release list --json",
    )
    add_json(parser)
    parser.set_defaults(handler=run_release)

    parser = subparser(
        group,
        "withdraw",
        "stop offering a release",
        "Remove a release from the signed list: no agent takes it from now on; agents\n"
        "that run it keep it.",
        "example:\n  redflag-appliance release withdraw 3",
    )
    parser.add_argument("release_id", type=int, metavar="ID", help="the id from 'release list'")
    parser.set_defaults(handler=run_release)

    parser = subparser(
        group,
        "rotate-key",
        "replace one TUF role's key",
        "Make a new key for ROLE and sign a new root that lists it (for the root role,\n"
        "signed by the old and the new root key): agents move over at their next check.\n"
        "Take a backup afterwards: a backup from before holds the old keys only.",
        "example:\n  redflag-appliance release rotate-key timestamp",
    )
    parser.add_argument("role", choices=ROLES, help="the role whose key is replaced")
    parser.set_defaults(handler=run_release)


def _run(settings: Settings, work: Callable[[ReleaseRepository], Awaitable[Any]]) -> Any:
    async def with_repository(db: Database) -> Any:
        keys = await open_key_service(db, settings.key_file, initialise=True)
        repository = ReleaseRepository(db, keys.kek, settings.data_dir / "releases")
        await repository.ensure_initialised()
        return await work(repository)

    try:
        return run_with_database(settings, with_repository)
    except DomainError as exc:
        raise CliError(str(exc)) from None


def run_release(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    actor = cli_actor()
    if args.action == "publish":
        return _publish(args, settings, actor)
    if args.action == "build":
        return _build(args, settings, actor)
    if args.action == "list":
        releases, status = _run(settings, lambda repo: _both(repo.releases(), repo.status()))
        if args.json:
            print_json({"releases": [vars(r) for r in releases], **status})
            return 0
        for release in releases:
            state = f"withdrawn {release.withdrawn_at}" if release.withdrawn_at else "listed"
            print(
                f"{release.id:>4}  {release.version:<12} {release.channel:<8} "
                f"{release.platform:<14} {state}  {release.published_at}"
            )
        if not releases:
            print("no releases yet: 'redflag-appliance release publish FILE --version V'")
        for role in status["roles"]:
            warning = " EXPIRED" if role["expired"] else ""
            warning = warning or (" expires soon" if role["expires_soon"] else "")
            expires = role["expires_at"]
            print(f"{role['role']:<10} version {role['version']}, expires {expires}{warning}")
        return 0
    if args.action == "withdraw":
        _run(settings, lambda repo: repo.withdraw(actor, args.release_id))
        print(f"release {args.release_id} withdrawn")
        return 0
    key_id = _run(settings, lambda repo: repo.rotate_key(actor, args.role))
    print(f"new {args.role} key {key_id}; agents move to it at their next release check")
    return 0


async def _both(first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
    return await first, await second


def _build(args: argparse.Namespace, settings: Settings, actor: Any) -> int:
    made = []
    for platform in args.platform or sorted(PLATFORM_TAGS):
        print(f"building the agent for {platform} …", flush=True)
        try:
            made.append(
                wheelhouse.build(args.project, platform, args.output, tuple(args.python or PYTHONS))
            )
        except wheelhouse.BuildFailed as exc:
            raise CliError(str(exc)) from None
        print(f"  {made[-1].file}")
    published = []
    if args.publish:
        for build in made:
            release = _run(
                settings,
                lambda repo, build=build: repo.publish(
                    actor,
                    build.file,
                    version=build.version,
                    channel=args.channel,
                    platform=build.platform,
                ),
            )
            published.append(release)
            print(f"published {release.target_path}")
    if args.json:
        print_json(
            {
                "builds": [str(b.file) for b in made],
                "published": [vars(r) for r in published],
            }
        )
    return 0


def _publish(args: argparse.Namespace, settings: Settings, actor: Any) -> int:
    described = wheelhouse.described_build(args.file)
    version = args.version or (described or {}).get("version")
    platform = args.platform or (described or {}).get("platform") or "any"
    if not version:
        raise CliError(f"{args.file} is not an agent build: give --version")
    try:
        release = _run(
            settings,
            lambda repo: repo.publish(
                actor, args.file, version=version, channel=args.channel, platform=platform
            ),
        )
    except CliError as exc:
        if args.if_new and "already published" in str(exc):
            print(f"{version} for {platform} is already published on {args.channel}; kept")
            return 0
        raise
    if args.json:
        print_json(vars(release))
    else:
        print(
            f"published {release.target_path} (release {release.id}, "
            f"{release.length} bytes, sha256 {release.sha256})"
        )
    return 0
