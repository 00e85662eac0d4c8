"""`redflag-agent`: enrol this host, run the daemon, show status."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__, installed, register_failures, state
from agent.client import ApplianceError
from agent.config import AgentConfig, ConfigError, load_config
from agent.daemon import RUNTIME_FILE, AgentDaemon
from agent.enrol import Identity, register
from agent.facts import collect_host_facts
from agent.http_client import HTTPFailure
from agent.outbox import OUTBOX_FILE, Outbox
from agent.progress import Progress, ScanSummary, plural
from agent.scanners import configured_scanners
from agent.session import NotRegistered
from agent.trust import TrustError, TrustState
from kernel.clock import utc_iso
from kernel.logs import configure_logging
from kernel.protocol import ProtocolError, scan_report_updates
from kernel.tags import InvalidTagText, clean_tag

DEFAULT_STATE_DIR = "/var/lib/redflag-agent"

EPILOG = """\
examples:
  redflag-agent register --server https://redflag.lan:8080 --token rf_reg_...
  redflag-agent run
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
        "--token rf_reg_xxxx.yyyy\n  redflag-agent register --server https://redflag.lan "
        "--token rf_reg_xxxx.yyyy --tag web --tag rack:2\n\nThe token comes from "
        "'redflag-appliance token create' or the web UI. It carries the\nappliance's key "
        "fingerprint, so the agent verifies the appliance before trusting it.\nThe host "
        "gets the token's tags, and those given with --tag if the token allows.\n\n"
        "exit codes: 0 registered, 1 other error, 2 usage, 3 name not resolved,\n"
        "4 no connection, 5 TLS, 6 clock skew, 7 root key fingerprint mismatch,\n"
        "8 token unknown/expired/revoked, 9 seats used up, 10 token refuses host tags",
    )
    sub.add_argument("--server", required=True, help="the appliance's URL")
    sub.add_argument("--token", required=True, help="a registration token")
    sub.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="a tag for this host, besides the token's (repeat for more)",
    )
    sub.set_defaults(handler=cmd_register)

    sub = add(
        "run",
        "the daemon: check in, run commands, scan, drain the outbox",
        "examples:\n  redflag-agent run\n\nUsually started by systemd "
        "(packaging/redflag-agent.service). SIGTERM or Ctrl-C stops\nit after the current "
        "step; a second one stops it at once. Nothing queued is lost:\nthe outbox is on disk.",
    )
    sub.set_defaults(handler=cmd_run)

    sub = add(
        "once",
        "one full cycle (check in, scan if due, drain), then exit",
        "examples:\n  redflag-agent once      # e.g. from cron",
    )
    sub.set_defaults(handler=cmd_once)

    sub = add(
        "scan",
        "run the scanners here and print what they find (nothing is sent)",
        "examples:\n  redflag-agent scan\n  redflag-agent scan --json\n"
        "  redflag-agent scan --source apt\n\nScanners are the built-in ones whose tool "
        "exists on this host (apt, dnf, docker,\nwinget, windows_update) and any "
        "[scanners.NAME] in agent.toml.",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--source", help="only this scanner")
    sub.set_defaults(handler=cmd_scan)

    sub = add(
        "status",
        "identity, last sync, outbox depth, breakers, next attempt",
        "examples:\n  redflag-agent status\n  redflag-agent status --json",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(handler=cmd_status)

    sub = add(
        "self-test",
        "import every part of this agent and read its state; exit 0 when it can run",
        "examples:\n  redflag-agent self-test --state-dir /var/lib/redflag-agent\n\n"
        "Self-update runs it with the new version before switching to it (docs/releases.md).\n"
        "It changes nothing. exit codes: 0 fine, 1 something is missing or unreadable.",
    )
    sub.set_defaults(handler=cmd_self_test)
    return parser


def cmd_self_test(args: argparse.Namespace) -> int:
    import importlib
    import pkgutil

    import kernel

    directory = state_dir_from(args)
    try:
        for package in (sys.modules["agent"], kernel):
            prefix = f"{package.__name__}."
            for module in pkgutil.walk_packages(package.__path__, prefix):
                if not module.name.endswith("__main__"):  # that one runs the CLI
                    importlib.import_module(module.name)
        load_config(directory)
        if Identity.load(directory) is None:
            raise NotRegistered(f"{directory} holds no registration")
        TrustState.from_json(state.read_json(directory, state.TRUST_FILE) or {})
    except Exception as exc:
        print(f"redflag-agent: self-test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"redflag-agent {__version__}: self-test passed")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    directory = state_dir_from(args)
    for tag in args.tag:
        try:
            clean_tag(tag)
        except InvalidTagText as exc:
            print(f"redflag-agent: error: --tag {tag[:80]!r}: {exc}", file=sys.stderr)
            return register_failures.USAGE
    try:
        identity, created, tags = register(
            directory, args.server, args.token, collect_host_facts(), tags=args.tag
        )
    except Exception as exc:
        explained = register_failures.explain(exc)
        if explained is None:
            raise
        code, line = explained
        print(f"redflag-agent: error: {line}", file=sys.stderr)
        return code
    verb = "registered as" if created else "already registered as"
    print(f"{verb} agent {identity.agent_id} with {identity.server}")
    print(f"tags: {', '.join(tags) or 'none'}")
    if args.tag and not created:
        print("(already registered: --tag changed nothing; change tags on the appliance)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(os.environ.get("REDFLAG_AGENT_LOG_LEVEL", "info"))
    daemon = AgentDaemon(state_dir_from(args))
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if stopping.is_set():
            os._exit(1)  # a second signal: the operator really means it
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # How a self-update's watchdog finds the agent to restart when systemd does not run.
    installed.write_pid(daemon.state_dir, installed.PID_FILE)
    try:
        daemon.run(stopping)
    finally:
        daemon.close()
        if installed.read_pid(daemon.state_dir, installed.PID_FILE) == os.getpid():
            (daemon.state_dir / installed.PID_FILE).unlink(missing_ok=True)
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    configure_logging(os.environ.get("REDFLAG_AGENT_LOG_LEVEL", "warning"))
    daemon = AgentDaemon(state_dir_from(args), progress=Progress(sys.stderr))
    try:
        daemon.cycle()
        last_error = daemon.status.get("last_error")
        delivery_error = daemon.status.get("last_delivery_error")
        depth = daemon.outbox.depth()
        queued = daemon.outbox.waiting([uuid for _, uuid in daemon.scans if uuid])
    finally:
        daemon.close()
    for summary, uuid in daemon.scans:
        print(summary.line("queued" if uuid in queued else "reported"))
    if last_error:
        print(
            f"redflag-agent: check-in failed: {last_error}; {depth} event(s) wait in the outbox",
            file=sys.stderr,
        )
        return 1
    if delivery_error and depth:
        print(
            f"redflag-agent: checked in, but delivery failed: {delivery_error}; {depth} "
            "event(s) wait in the outbox",
            file=sys.stderr,
        )
        return 1
    print(f"checked in; {plural(depth, 'event')} still in the outbox")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    configure_logging(os.environ.get("REDFLAG_AGENT_LOG_LEVEL", "warning"))
    directory = Path(args.state_dir) if args.state_dir else None
    config = load_config(directory) if directory and directory.exists() else AgentConfig()
    scanners = [s for s in configured_scanners(config) if args.source in (None, s.name)]
    if args.source and not scanners:
        raise ConfigError(f"no scanner {args.source!r} on this host")
    results: dict[str, dict[str, Any]] = {}
    progress = Progress(None if args.json else sys.stderr)
    summaries: dict[str, ScanSummary] = {}
    for scanner in scanners:
        progress.scanning(scanner.name)
        try:
            updates = scanner.scan()
            source = getattr(scanner, "source", scanner.name)
            scan_report_updates({"source": source, "updates": updates})
            results[scanner.name] = {"updates": updates, "error": None}
            summary = ScanSummary.of(scanner.name, updates, progress.elapsed(scanner.name))
        except Exception as exc:  # one scanner failing never hides the others
            error = f"{type(exc).__name__}: {exc}"
            results[scanner.name] = {"updates": [], "error": error}
            summary = ScanSummary(scanner.name, error=error)
        summaries[scanner.name] = summary
        progress.scanned(summary)
    if args.json:
        print(json.dumps(results, indent=2))
    elif not results:
        print("no scanner applies to this host")
    for name, result in [] if args.json else results.items():
        print(summaries[name].line())
        for update in result["updates"]:
            flags = " [security]" if update.get("security") else ""
            flags += " [held]" if update.get("held") else ""
            current = update.get("current_version", "")
            print(
                f"  {update['package']:<36} {current:>24} -> {update['available_version']}{flags}"
            )
    return 1 if any(r["error"] for r in results.values()) else 0


def cmd_status(args: argparse.Namespace) -> int:
    directory = state_dir_from(args)
    identity = Identity.load(directory)
    trust_raw = state.read_json(directory, state.TRUST_FILE)
    if identity is None or trust_raw is None:
        raise NotRegistered(f"{directory} holds no registration; run 'redflag-agent register'")
    trust = TrustState.from_json(trust_raw)
    runtime = state.read_json(directory, RUNTIME_FILE) or {}
    outbox = Outbox(directory / OUTBOX_FILE)
    try:
        status = {
            "agent_id": identity.agent_id,
            "server": identity.server,
            "state_dir": str(directory),
            "root_key_id": trust.root_key_id,
            "key_set_version": trust.key_set_version,
            "last_command_seq": trust.last_seq,
            "last_sync_at": _when(runtime.get("last_sync_at")),
            "last_error": runtime.get("last_error"),
            "next_attempt_at": _when(runtime.get("next_attempt_at")),
            "outbox": outbox.depth_by_priority(),
            "dead_letters": outbox.dead_letter_count(),
            "recent_dead_letters": outbox.dead_letters(5),
            "breakers": runtime.get("breakers", {}),
        }
    finally:
        outbox.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for name in (
        "agent_id",
        "server",
        "state_dir",
        "key_set_version",
        "last_command_seq",
        "last_sync_at",
        "last_error",
        "next_attempt_at",
        "dead_letters",
    ):
        print(f"{name:<18} {status[name]}")
    print(f"{'outbox':<18} " + ", ".join(f"{k} {v}" for k, v in status["outbox"].items()))
    for name, breaker in status["breakers"].items():
        print(f"{'breaker ' + name:<18} {breaker['state']} {breaker.get('last_error') or ''}")
    for dead in status["recent_dead_letters"]:
        print(f"{'dead letter':<18} {dead['kind']} {dead['uuid']}: {dead['reason']}")
    return 0


def _when(epoch: int | None) -> str | None:
    return utc_iso(epoch) if epoch else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (
        ProtocolError,
        TrustError,
        ApplianceError,
        NotRegistered,
        state.StateError,
        ConfigError,
    ) as exc:
        print(f"redflag-agent: error: {exc}", file=sys.stderr)
        return 1
    except HTTPFailure as exc:
        print(f"redflag-agent: error: cannot reach the appliance: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"redflag-agent: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
