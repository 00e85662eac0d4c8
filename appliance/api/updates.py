"""Admin JSON API: updates across the fleet, decisions, dry-runs, installs, history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from appliance.api.auth import OPERATOR, VIEWER
from appliance.api.endpoints import API, Call, Done, Failure, Reply, Shape, endpoint
from appliance.api.payload import invalid_input
from appliance.domain.update_lifecycle import MoveRefused, State
from appliance.services import updates
from kernel.protocol import SEVERITIES

MAX_IDS = 5000
MAX_UNKNOWN_NAMED = 100
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
UpdateStatus = Literal[tuple(state.value for state in State)]  # type: ignore[misc]
UpdateIdList = Annotated[
    list[int],
    Meta(min_length=1, max_length=MAX_IDS, description="1-5000 update ids (`GET /updates`)."),
]


class Update(Shape):
    """One pending (or decided, installed...) update of one package on one agent."""

    id: int
    agent_id: str
    hostname: str
    source: Annotated[str, Meta(description="apt, dnf, docker, winget, windows_update...")]
    package: str
    arch: str
    current_version: str
    available_version: str
    origin: str
    severity: Severity
    security: bool
    advisories: Annotated[list[str], Meta(description="CVE or advisory ids.")]
    size_bytes: int | None
    reboot_required: bool
    details: Annotated[dict[str, Any], Meta(description="Source-specific facts.")]
    status: UpdateStatus
    status_changed_at: str
    status_changed_by: str
    first_seen_at: str
    last_seen_at: str
    scheduled_for: Annotated[str | None, Meta(description="UTC time of a scheduled install.")]


class UpdateQuery(Shape):
    agent_id: str = ""
    agent: Annotated[str, Meta(description="The same as agent_id (its older name).")] = ""
    source: str = ""
    package: str = ""
    severity: Severity | Literal[""] = ""
    status: UpdateStatus | Literal[""] = ""
    tag: Annotated[str, Meta(description="Only agents with this tag.")] = ""
    text: Annotated[str, Meta(description="A part of the package name or hostname.")] = ""
    security: Annotated[bool | None, Meta(description="Only security updates, or none.")] = None
    limit: Annotated[int, Meta(ge=1, le=500)] = 100
    offset: Annotated[int, Meta(ge=0)] = 0


class UpdateList(Shape):
    """One page of updates, and how many match in all."""

    updates: list[Update]
    total: int
    limit: int
    offset: int


class UpdateIds(Shape):
    ids: UpdateIdList


class ScheduleRequest(Shape):
    ids: UpdateIdList
    at: Annotated[
        datetime,
        Meta(description="When to install, within a year: RFC 3339 with its offset."),
    ]


class Decided(Done):
    """Which updates changed; asking again changes nothing (a double click is harmless)."""

    changed: list[int]
    unchanged: Annotated[
        list[int], Meta(description="Already decided, or not in a state this decision applies to.")
    ]


class RequestedCommand(Shape):
    """One command: one agent's updates of one source."""

    command_id: int
    agent_id: str
    source: str
    packages: list[str]
    update_ids: list[int]


class CommandsRequested(Done):
    """The commands that will carry out the request, one per agent and source."""

    commands: list[RequestedCommand]


_FILTERS = ("agent_id", "source", "package", "severity", "status", "tag", "text")
_UNKNOWN = Failure(422, "an id names no update; `errors` names each (`ids[3]`)")


@contextmanager
def _naming_unknown_ids(ids: list[int]) -> Iterator[None]:
    """A request naming ids of no update is refused whole, with a 422 naming each
    (`ids[3]`); the service decides it inside its transaction."""
    try:
        yield
    except updates.UnknownUpdates as exc:
        missing = set(exc.ids)
        named = [
            (f"ids[{i}]", f"no update has the id {n}") for i, n in enumerate(ids) if n in missing
        ]
        if len(named) > MAX_UNKNOWN_NAMED:
            named = [*named[:MAX_UNKNOWN_NAMED], ("ids", f"{len(named)} ids name no update")]
        raise invalid_input(*named) from None


@endpoint(
    "GET",
    f"{API}/updates",
    area="Updates",
    summary="List updates",
    requires=VIEWER,
    query=UpdateQuery,
    answer=UpdateList,
    example={"status": "pending", "security": True, "limit": 50},
)
async def list_updates(call: Call) -> UpdateList:
    """Updates across the fleet, filtered by any of the parameters, in pages."""
    query: UpdateQuery = call.query
    filters: dict[str, Any] = {k: getattr(query, k) for k in _FILTERS if getattr(query, k)}
    if query.agent and "agent_id" not in filters:
        filters["agent_id"] = query.agent
    if query.security is not None:
        filters["security"] = query.security
    found, total = await updates.list_updates(
        call.db, filters, limit=query.limit, offset=query.offset
    )
    listed = msgspec.convert(found, list[Update], from_attributes=True)
    return UpdateList(updates=listed, total=total, limit=query.limit, offset=query.offset)


async def _decide(call: Call, action: str) -> Decided:
    ids = call.body.ids
    with _naming_unknown_ids(ids):
        decision = await updates.decide(call.db, call.actor, ids, action)
    return Decided(changed=decision.changed, unchanged=decision.unchanged)


def _decision(action: str, summary: str) -> Any:
    """The declaration of one of the three decisions; they differ in name only."""
    return endpoint(
        "POST",
        f"{API}/updates/{action}",
        area="Updates",
        summary=summary,
        requires=OPERATOR,
        body=UpdateIds,
        answer=Decided,
        failures=[_UNKNOWN],
        example={"ids": [1, 2]},
    )


@_decision("approve", "Approve updates")
async def approve(call: Call) -> Decided:
    """Approve updates for install (those pending, rejected, ignored or failed)."""
    return await _decide(call, "approve")


@_decision("reject", "Reject updates")
async def reject(call: Call) -> Decided:
    """Reject updates (pending or approved); a scheduled install not yet due is called off."""
    return await _decide(call, "reject")


@_decision("ignore", "Ignore updates")
async def ignore(call: Call) -> Decided:
    """Ignore updates (pending, approved, rejected or failed); a scheduled install not
    yet due is called off."""
    return await _decide(call, "ignore")


async def _request(call: Call, kind: str) -> Reply:
    ids = call.body.ids
    with _naming_unknown_ids(ids):
        created = await updates.request(
            call.db, call.actor, ids, kind, idempotency_key=call.idempotency_key
        )
    commands = msgspec.convert(created, list[RequestedCommand])
    return Reply(CommandsRequested(commands=commands), status=202)


@endpoint(
    "POST",
    f"{API}/updates/dry-run",
    area="Updates",
    summary="Dry-run updates",
    requires=OPERATOR,
    body=UpdateIds,
    answer=CommandsRequested,
    status=202,
    idempotency_key=True,
    failures=[_UNKNOWN],
    example={"ids": [1, 2]},
)
async def dry_run(call: Call) -> Reply:
    """Ask each agent what installing these updates would do (what it would remove,
    too), changing nothing. The agents answer on their next check-in; follow each
    command with `GET /commands/{command_id}`."""
    return await _request(call, "dry_run")


@endpoint(
    "POST",
    f"{API}/updates/install",
    area="Updates",
    summary="Install approved updates",
    requires=OPERATOR,
    body=UpdateIds,
    answer=CommandsRequested,
    status=202,
    idempotency_key=True,
    failures=[
        _UNKNOWN,
        Failure(
            409,
            "an update is not approved, or its install is already requested",
            when=MoveRefused,
        ),
    ],
    example={"ids": [1, 2]},
)
async def install(call: Call) -> Reply:
    """Install approved updates now: one command per agent and source. Send an
    `Idempotency-Key` so that a retried request installs nothing twice."""
    return await _request(call, "install")


@endpoint(
    "POST",
    f"{API}/updates/schedule",
    area="Updates",
    summary="Schedule an install",
    requires=OPERATOR,
    body=ScheduleRequest,
    answer=Decided,
    failures=[
        _UNKNOWN,
        Failure(
            422,
            "`at` has passed, is more than a year ahead or has no UTC offset",
            when=updates.InvalidSchedule,
            field="at",
            message="{exc.message}",
        ),
    ],
    example={"ids": [1, 2], "at": "2027-01-15T02:00:00Z"},
)
async def schedule(call: Call) -> Decided:
    """Install these updates at a time: pending, approved, failed and already scheduled
    ones take it (pending ones are approved by it); the scheduler requests the install
    once it is due. Scheduling again sets the time again."""
    body: ScheduleRequest = call.body
    with _naming_unknown_ids(body.ids):
        decision = await updates.schedule(call.db, call.actor, body.ids, body.at)
    return Decided(changed=decision.changed, unchanged=decision.unchanged)
