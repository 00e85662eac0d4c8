"""Admin JSON API: commands across the fleet, one command with its output, and retrying
or cancelling one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from msgspec import Meta

from appliance.api.auth import OPERATOR, VIEWER
from appliance.api.endpoints import API, Call, Done, Failure, Reply, Shape, endpoint
from appliance.api.errors import ApiError
from appliance.services import commands, operations
from appliance.services.commands import CommandRecord, OutputChunk
from appliance.services.operations import CommandSummary

_NO_SUCH_COMMAND = Failure(
    404, "no such command", when=commands.CommandNotFound, message="no such command"
)


class CommandQuery(Shape):
    state: Annotated[
        str, Meta(description="`active`, `finished` or one status, e.g. `failed`.")
    ] = ""
    agent_id: str = ""
    kind: Annotated[str, Meta(description="e.g. `install`, `dry_run`, `scan`.")] = ""
    limit: Annotated[int, Meta(ge=1, le=500)] = 100
    before_id: Annotated[int | None, Meta(description="The previous page's `next_before_id`.")] = (
        None
    )


class CommandList(Shape):
    """Newest first; `next_before_id` is null on the last page."""

    commands: list[CommandSummary]
    next_before_id: int | None


@endpoint(
    "GET",
    f"{API}/commands",
    area="Commands",
    summary="List commands across the fleet",
    requires=VIEWER,
    query=CommandQuery,
    answer=CommandList,
    failures=[
        Failure(
            422,
            "`state` is not active, finished or a command status",
            when=commands.InvalidCommand,
            field="state",
        )
    ],
    example={"state": "failed", "limit": 20},
)
async def list_commands(call: Call) -> CommandList:
    """Commands of every agent, newest first, in pages: ask again with `before_id` set
    to the answer's `next_before_id` for the next page."""
    query: CommandQuery = call.query
    found = await operations.recent_commands(
        call.db,
        state=query.state or None,
        agent_id=query.agent_id or None,
        kind=query.kind or None,
        limit=query.limit,
        before_id=query.before_id,
    )
    next_page = found[-1].id if len(found) == query.limit else None
    return CommandList(commands=found, next_before_id=next_page)


class CommandDetail(Shape):
    """A command, its outcome and all of its output."""

    id: int
    agent_id: str
    seq: Annotated[int, Meta(description="The agent's sequence number of this command.")]
    kind: str
    params: dict[str, Any]
    status: Literal[
        "created",
        "sent",
        "acknowledged",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
    ]
    created_at: str
    expires_at: str
    error: str | None
    result: Annotated[Any, Meta(description="What the agent reported; depends on the kind.")]
    output: list[OutputChunk]


@endpoint(
    "GET",
    f"{API}/commands/{{command_id:int}}",
    area="Commands",
    summary="One command with its output",
    requires=VIEWER,
    answer=CommandDetail,
    failures=[_NO_SUCH_COMMAND],
)
async def get_command(call: Call) -> CommandDetail:
    """A command's state, result and every chunk of output the agent sent."""
    command, output = await commands.command_with_output(call.db, call.path("command_id"))
    return CommandDetail(**asdict(command), output=output)


class Retried(Done):
    """The retry: a new command with the original's kind and parameters."""

    retry_of: int
    command: CommandRecord


@endpoint(
    "POST",
    f"{API}/commands/{{command_id:int}}/retry",
    area="Commands",
    summary="Retry a command",
    requires=OPERATOR,
    answer=Retried,
    status=201,
    also={200: "the command was retried before: that same retry"},
    failures=[
        _NO_SUCH_COMMAND,
        Failure(
            409, "the command did not fail, time out or get cancelled", when=commands.NotRetryable
        ),
    ],
)
async def retry(call: Call) -> Reply:
    """A new command with the same kind and parameters as a failed, timed-out or
    cancelled one. A command is retried once: asking again answers with that retry."""
    command_id = call.path("command_id")
    command, created = await commands.retry_command(call.db, call.actor, command_id)
    return Reply(Retried(retry_of=command_id, command=command), status=201 if created else 200)


class Cancelled(Done):
    command_id: int
    status: Literal["cancelled"]


@endpoint(
    "POST",
    f"{API}/commands/{{command_id:int}}/cancel",
    area="Commands",
    summary="Cancel a command",
    requires=OPERATOR,
    answer=Cancelled,
    failures=[
        _NO_SUCH_COMMAND,
        Failure(409, "too late: the command was sent, so the agent may already have it"),
    ],
)
async def cancel(call: Call) -> Cancelled:
    """Cancel a command no agent has been sent yet; a cancelled install gives its
    updates back to approved."""
    command_id = call.path("command_id")
    cancelled = await commands.cancel_command(call.db, call.actor, command_id)
    if not cancelled:
        raise ApiError(
            409, "too late to cancel: the command was sent, so the agent may already have it"
        )
    return Cancelled(command_id=command_id, status="cancelled")
