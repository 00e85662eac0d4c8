"""`doctor`: every health check, for a human, with what to do about each failure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import apsw

from appliance import file_modes
from appliance.cli.common import add_json, print_json, subparser
from appliance.lockfile import lock_holder
from appliance.services import audit, backups, health
from appliance.services import settings as runtime_settings
from appliance.settings import Settings, load_settings
from appliance.store import health as health_store
from appliance.store.database import Database
from appliance.store.migrations import MigrationError, load_migrations, plan_migrations


@dataclass(frozen=True)
class Finding:
    name: str
    level: str  # ok, warn, fail
    detail: str


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands,
        "doctor",
        "run every health check and explain the results",
        "Check the data dir, database integrity, schema, free disk, backups, the audit\n"
        "chain and, when the appliance runs, its /readyz. Exit code 1 if any check\n"
        "fails; warnings alone exit 0.",
        "examples:\n  redflag-appliance doctor\n"
        "  redflag-appliance doctor --data-dir /var/lib/redflag --json",
    )
    add_json(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir})
    findings = diagnose(settings)
    if args.json:
        print_json([asdict(f) for f in findings])
    else:
        marks = {"ok": " ok ", "warn": "WARN", "fail": "FAIL"}
        for finding in findings:
            print(f"[{marks[finding.level]}] {finding.name:<18} {finding.detail}")
    failed = [f for f in findings if f.level == "fail"]
    if not args.json:
        print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0


def diagnose(settings: Settings) -> list[Finding]:
    findings = [_data_dir(settings), _file_modes(settings)]
    if not settings.database_path.exists():
        findings.append(
            Finding(
                "database",
                "fail",
                f"no database at {settings.database_path}; "
                "check --data-dir or run 'redflag-appliance migrate'",
            )
        )
        return findings
    findings += [_integrity(settings), _schema(settings)]
    if any(f.level == "fail" for f in findings):
        return findings
    findings += asyncio.run(_database_checks(settings))
    findings.append(_backups(settings))
    findings.append(_running_appliance(settings))
    return findings


def _data_dir(settings: Settings) -> Finding:
    if not settings.data_dir.is_dir():
        return Finding("data_dir", "fail", f"{settings.data_dir} does not exist")
    if not os.access(settings.data_dir, os.W_OK):
        return Finding("data_dir", "fail", f"{settings.data_dir} is not writable by this user")
    return Finding("data_dir", "ok", str(settings.data_dir.resolve()))


def _file_modes(settings: Settings) -> Finding:
    shared = file_modes.too_open(settings)
    if shared:
        names = ", ".join(str(p) for p in shared[:5]) + (" ..." if len(shared) > 5 else "")
        return Finding(
            "file_modes",
            "fail",
            f"others may read {names}; make them private: {file_modes.fix_command(shared)} "
            "(install.sh does it on upgrade)",
        )
    return Finding("file_modes", "ok", "data dir 0700; database, backups and key file 0600")


def _integrity(settings: Settings) -> Finding:
    rows = health_store.quick_check(settings.database_path)
    if rows != ["ok"]:
        return Finding(
            "database",
            "fail",
            f"quick_check failed: {rows[0]}; restore a backup ('redflag-appliance restore FILE')",
        )
    return Finding("database", "ok", "quick_check ok")


def _schema(settings: Settings) -> Finding:
    conn = apsw.Connection(str(settings.database_path))
    try:
        plan = plan_migrations(conn, load_migrations())
    except MigrationError as exc:
        return Finding("schema", "fail", str(exc))
    finally:
        conn.close()
    if plan.pending:
        return Finding(
            "schema",
            "warn",
            f"version {plan.current_version}, "
            f"{len(plan.pending)} migration(s) pending; 'serve' applies them",
        )
    return Finding("schema", "ok", f"version {plan.current_version} (newest)")


async def _database_checks(settings: Settings) -> list[Finding]:
    db = await Database.open(settings.database_path)
    try:
        tunables = await runtime_settings.current(db)
        writable = await health.database_writable(db)
        chain = audit.verify_chain(settings.database_path)
    finally:
        await db.close()
    disk = health.disk_free(settings.data_dir, tunables["disk_free_min_mb"])
    findings = [
        Finding("database_writable", "ok" if writable.ok else "fail", writable.detail),
        Finding("disk_free", "ok" if disk.ok else "fail", disk.detail),
    ]
    if chain.ok:
        findings.append(Finding("audit_chain", "ok", f"{chain.rows_checked} rows verified"))
    else:
        findings.append(Finding("audit_chain", "fail", "; ".join(chain.problems[:3])))
    return findings


def _backups(settings: Settings) -> Finding:
    found = [
        b for b in backups.list_backups(settings) if b.kind in (*backups.REGULAR_KINDS, "other")
    ]
    if not found:
        return Finding("backups", "warn", "no backup yet; 'redflag-appliance backup' makes one")
    age_h = (datetime.now(UTC) - found[0].modified_at).total_seconds() / 3600
    level = "ok" if age_h < 48 else "warn"
    return Finding(
        "backups", level, f"newest {found[0].path.name}, {age_h:.1f} h old, {len(found)} kept"
    )


def _running_appliance(settings: Settings) -> Finding:
    holder = lock_holder(settings.lock_path)
    if holder is None:
        return Finding("appliance", "warn", "not running on this data dir")
    if holder.purpose != "serve":
        return Finding("appliance", "warn", f"{holder.describe()} holds the data dir")
    base = holder.url or f"http://{settings.host}:{settings.port}"
    url = f"{base}/readyz"
    who = holder.describe()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (fixed http URL)
            report = json.load(response)
    except urllib.error.HTTPError as exc:
        report = json.load(exc)
    except (OSError, ValueError) as exc:
        return Finding(
            "appliance", "fail", f"{who} holds the data dir but {url} does not answer: {exc}"
        )
    failing = [f"{name}: {c['detail']}" for name, c in report["checks"].items() if not c["ok"]]
    if failing:
        return Finding("appliance", "fail", f"{url} not ready: " + "; ".join(failing))
    return Finding("appliance", "ok", f"{who}, {url} ready")
