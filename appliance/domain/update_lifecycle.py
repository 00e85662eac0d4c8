"""The life of an update, in one table: its states, the actions that move it, and
which moves are allowed. The store's state lists (claims, the scan's upsert) come
from here, so a rule changes in one place.

    pending --approve--> approved --request_install--> queued --start--> installing
    installing --succeed--> installed | --fail--> failed
    approved --schedule--> scheduled --due--> queued
    pending --reject/ignore--> rejected / ignored
    open states --unlisted--> resolved (a re-scan no longer lists it)
    any state --new_version--> pending (a newer version needs a fresh decision);
    installed / resolved --listed_again--> pending
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from appliance.domain.errors import Conflict


class State(StrEnum):
    PENDING = "pending"  # reported, waiting for a decision
    APPROVED = "approved"  # may be installed
    REJECTED = "rejected"  # not this version
    IGNORED = "ignored"  # not wanted; hidden by default
    SCHEDULED = "scheduled"  # approved, waiting for its install time
    QUEUED = "queued"  # its install command exists, waiting for the agent
    INSTALLING = "installing"  # the agent took the install command
    INSTALLED = "installed"
    FAILED = "failed"
    RESOLVED = "resolved"  # a scan no longer lists it: dealt with outside RedFlag


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    IGNORE = "ignore"
    SCHEDULE = "schedule"  # set (or move) an install time
    REQUEST_INSTALL = "request_install"  # its install command is created now
    INSTALL_NOW = "install_now"  # approve and request the install in one step
    DUE = "due"  # its install time came: the scheduler requests the install
    DUE_FAILED = "due_failed"  # its time came but no command can carry it
    CANCEL_INSTALL = "cancel_install"  # the install command was cancelled unsent
    RETRY = "retry"  # the failed install is tried again
    START = "start"  # the agent acknowledged the install command
    SUCCEED = "succeed"
    FAIL = "fail"
    UNLISTED = "unlisted"  # a scan of its source no longer lists it
    LISTED_AGAIN = "listed_again"  # listed again after it was installed or resolved


S, A = State, Action
_UNDECIDED_OR_FAILED = (S.PENDING, S.REJECTED, S.IGNORED, S.FAILED)

MOVES: dict[Action, tuple[tuple[State, ...], State]] = {
    A.APPROVE: (_UNDECIDED_OR_FAILED, S.APPROVED),
    A.REJECT: ((S.PENDING, S.APPROVED, S.SCHEDULED), S.REJECTED),
    A.IGNORE: ((S.PENDING, S.APPROVED, S.REJECTED, S.FAILED, S.SCHEDULED), S.IGNORED),
    A.SCHEDULE: ((S.PENDING, S.APPROVED, S.FAILED, S.SCHEDULED), S.SCHEDULED),
    A.REQUEST_INSTALL: ((S.APPROVED, S.SCHEDULED), S.QUEUED),
    A.INSTALL_NOW: ((*_UNDECIDED_OR_FAILED, S.APPROVED, S.SCHEDULED), S.QUEUED),
    A.DUE: ((S.SCHEDULED,), S.QUEUED),
    A.DUE_FAILED: ((S.SCHEDULED,), S.FAILED),
    A.CANCEL_INSTALL: ((S.QUEUED,), S.APPROVED),
    A.RETRY: ((S.FAILED,), S.QUEUED),
    A.START: ((S.QUEUED,), S.INSTALLING),
    # A result that comes after its command timed out still lands: the agent knows.
    A.SUCCEED: ((S.QUEUED, S.INSTALLING, S.FAILED), S.INSTALLED),
    A.FAIL: ((S.QUEUED, S.INSTALLING), S.FAILED),
    A.UNLISTED: (
        (S.PENDING, S.APPROVED, S.REJECTED, S.IGNORED, S.SCHEDULED, S.FAILED),
        S.RESOLVED,
    ),
    A.LISTED_AGAIN: ((S.INSTALLED, S.RESOLVED), S.PENDING),
}

# A newer version than the one decided on needs a fresh decision, whatever the state.
NEW_VERSION_STATE = S.PENDING
# What still needs someone or something to act: the pages' default view.
NEEDS_WORK = (S.PENDING, S.APPROVED, S.SCHEDULED, S.QUEUED, S.INSTALLING, S.FAILED)
# An install is under way: nothing but its result may move these.
UNDERWAY = (S.QUEUED, S.INSTALLING)

# What a person reads for each state.
LABELS = {
    S.PENDING: "waiting for a decision",
    S.APPROVED: "approved",
    S.REJECTED: "rejected",
    S.IGNORED: "ignored",
    S.SCHEDULED: "scheduled",
    S.QUEUED: "queued for its agent",
    S.INSTALLING: "installing",
    S.INSTALLED: "installed",
    S.FAILED: "failed",
    S.RESOLVED: "resolved outside RedFlag",
}


# How a refusal reads, where "cannot <action> updates" says too little.
REFUSALS = {
    Action.REQUEST_INSTALL: "these are not approved, or their install is already requested:",
}


class MoveRefused(Conflict):
    """An action that the update's state does not allow; one error type for all (409)."""

    def __init__(self, action: Action, refused: dict[int, str]):
        self.action = action
        self.refused = refused  # update id -> its state
        shown = ", ".join(f"{i} ({state})" for i, state in list(refused.items())[:20])
        more = f" and {len(refused) - 20} more" if len(refused) > 20 else ""
        said = REFUSALS.get(action, f"cannot {action.value.replace('_', ' ')} updates")
        super().__init__(f"{said} {shown}{more}")


def allowed_from(action: Action) -> tuple[State, ...]:
    """The states `action` moves an update out of (the store's claim list)."""
    return MOVES[action][0]


def target(action: Action) -> State:
    return MOVES[action][1]


def move(state: str, action: Action) -> State | None:
    """The state after `action`, or None when `state` does not allow it."""
    sources, to = MOVES[action]
    return to if state in sources else None


def check(action: Action, states: dict[int, str]) -> None:
    """Refuse the whole request when any update may not take `action`."""
    refused = {i: s for i, s in states.items() if move(s, action) is None}
    if refused:
        raise MoveRefused(action, refused)


def sql_list(states: Iterable[State]) -> str:
    """`('a', 'b')` for an SQL `IN`: constants from this table, never input."""
    return "(" + ", ".join(f"'{s.value}'" for s in states) + ")"


@dataclass(frozen=True)
class Update:
    """One update of one package on one agent, as the appliance knows it."""

    id: int
    agent_id: str
    hostname: str
    source: str
    package: str
    arch: str
    current_version: str
    available_version: str
    origin: str
    severity: str
    security: bool
    advisories: list[str]
    size_bytes: int | None
    reboot_required: bool
    details: dict[str, Any]
    status: str
    status_changed_at: str
    status_changed_by: str
    first_seen_at: str
    last_seen_at: str
    scheduled_for: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Update:
        """From a row of the store's `COLUMNS` (JSON columns decoded, flags as bools)."""
        return cls(
            id=row["id"],
            agent_id=row["agent_id"],
            hostname=row["hostname"],
            source=row["source"],
            package=row["package"],
            arch=row["arch"],
            current_version=row["current_version"],
            available_version=row["available_version"],
            origin=row["origin"],
            severity=row["severity"],
            security=bool(row["security"]),
            advisories=json.loads(row["advisories"] or "[]"),
            size_bytes=row["size_bytes"],
            reboot_required=bool(row["reboot_required"]),
            details=json.loads(row["details"] or "{}"),
            status=row["status"],
            status_changed_at=row["status_changed_at"],
            status_changed_by=row["status_changed_by"],
            first_seen_at=row["first_seen_at"],
            last_seen_at=row["last_seen_at"],
            scheduled_for=row["scheduled_for"],
        )

    @property
    def label(self) -> str:
        """Its state in a person's words."""
        return LABELS.get(State(self.status), self.status)

    @property
    def held(self) -> bool:
        return bool(self.details.get("held"))
