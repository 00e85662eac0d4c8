"""What agents report about updates, inside the transaction that takes in their
events: scan reports (recorded by difference, each new update a domain event) and the
results of installs."""

from __future__ import annotations

import json
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.update_lifecycle import Action
from appliance.services import commands, update_moves
from appliance.store import scan_reports as scan_reports_store
from appliance.store import updates as updates_store
from appliance.store.database import Transaction
from kernel.clock import iso
from kernel.install_results import InstallResult
from kernel.protocol import ProtocolError, ScanReport
from kernel.sanitise import sanitise_output, sanitise_text

MAX_OUTPUT_CHARS = 64_000


def record_scan(
    tx: Transaction, agent: Actor, agent_id: str, report: ScanReport
) -> scan_reports_store.ScanChanges:
    """The updates a scan found (read and validated on arrival), recorded by difference;
    each new update, and each newer version of one, is an update.discovered event."""
    at = iso(agent.at)
    changes = scan_reports_store.record_scan(
        tx.conn, agent_id, report.source, report.updates, at, keep=report.unchecked
    )
    if changes.discovered:
        tx.emit_many(
            "update.discovered",
            [
                (
                    str(update_id),
                    {
                        "agent_id": agent_id,
                        "source": report.source,
                        "package": record.package,
                        "version": record.available_version,
                        "severity": record.severity,
                        "security": record.security,
                    },
                )
                for update_id, record in changes.discovered
            ],
            at,
        )
    return changes


MAX_RESULT_PACKAGES = 1000  # an install command carries at most 200 (updates.py)


def kept_install_result(raw: Any) -> str:
    """An install result as it is kept with its command: read as the wire record (so
    it is whole, however many packages), every text cleaned, the output capped. A
    result that is not one is refused (ProtocolError), and the event with it."""
    result = InstallResult.from_json(raw)
    packages = len(result.installed) + len(result.failed) + len(result.unchanged)
    if packages > MAX_RESULT_PACKAGES:
        raise ProtocolError(f"install result: at most {MAX_RESULT_PACKAGES} packages")
    kept = _cleaned(result.to_json())
    kept["output_tail"] = sanitise_output(result.output_tail, MAX_OUTPUT_CHARS)
    return json.dumps(kept)


def _cleaned(value: Any) -> Any:
    """Every string of a JSON value sanitised, the structure left whole."""
    if isinstance(value, str):
        return sanitise_text(value, 2000)
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    if isinstance(value, dict):
        return {sanitise_text(key, 64): _cleaned(item) for key, item in value.items()}
    return value


def record_install_result(
    tx: Transaction, agent: Actor, command: Any, payload: dict[str, Any]
) -> None:
    """An install finished: each of its updates installed or failed, with its capped
    output in the history."""
    params = json.loads(command["params"])
    result = payload.get("result") or {}
    output = sanitise_output(
        str(result.get("output_tail") or payload.get("error") or ""), MAX_OUTPUT_CHARS
    )
    installed = {i.get("package"): i for i in result.get("installed", []) if isinstance(i, dict)}
    # Already at the new version (e.g. installed by hand meanwhile) counts as done.
    unchanged = {str(name) for name in result.get("unchanged", []) if isinstance(name, str)}
    packages = params.get("packages", [])
    # update_ids and packages are made together, in the same order (updates._command_for).
    ids_by_package = dict(
        zip(packages, commands.install_update_ids("install", params), strict=False)
    )
    done = [p for p in packages if p in installed or p in unchanged]
    undone = [p for p in packages if p not in installed and p not in unchanged]
    error = str(payload.get("error") or result.get("error") or "not installed")[:500]
    update_moves.move(
        tx,
        agent,
        [ids_by_package[p] for p in done if p in ids_by_package],
        Action.SUCCEED,
        command_id=command["id"],
    )
    update_moves.move(
        tx,
        agent,
        [ids_by_package[p] for p in undone if p in ids_by_package],
        Action.FAIL,
        command_id=command["id"],
        error=error,
    )
    updates_store.add_history_many(
        tx.conn,
        [
            {
                "agent_id": command["agent_id"],
                "command_id": command["id"],
                "source": params["source"],
                "package": package,
                "from_version": str(installed.get(package, {}).get("from", "")),
                "to_version": str(installed.get(package, {}).get("to", "")),
                "outcome": "installed" if package in done else "failed",
                "output": output,
                "started_at": command["sent_at"] or iso(agent.at),
                "finished_at": iso(agent.at),
            }
            for package in packages
        ],
    )
