"""The request and answer shapes of the agents API (appliance/api/agents.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from appliance.api.endpoints import Done, Shape
from appliance.services import agent_admin
from appliance.services.commands import CommandRecord

AgentState = Literal["online", "offline", "disabled", "attention"]


class Agent(Shape):
    """An agent: its host, its state and what it last reported."""

    id: str
    hostname: str
    display_name: str | None
    os_family: str
    os_name: str
    os_version: str
    kernel: str
    arch: str
    agent_version: str
    machine_fingerprint: Annotated[str, Meta(description="The hardware it is bound to.")]
    reported_fingerprint: Annotated[
        str | None, Meta(description="A different fingerprint it reported, if any.")
    ]
    hardware_changed: Annotated[bool, Meta(description="True until an admin re-binds it.")]
    status: Literal["online", "offline"]
    disabled: bool
    registered_at: str
    last_seen_at: str | None
    last_ip: str | None
    poll_interval_s: Annotated[int | None, Meta(description="null: the fleet default.")]
    command_seq: int
    key_set_version: int
    breaker_states: Annotated[
        dict[str, Any], Meta(description="Each scanner's and installer's circuit breaker.")
    ]
    reboot_required: bool
    boot_time: str | None


class AgentDetail(Agent):
    """An agent with its tags and the system information it last sent."""

    tags: list[str]
    system_info: dict[str, Any] | None


class AgentListRow(Shape):
    """An agent as a line of the agents list, with its pending-update count."""

    id: str
    hostname: str
    display_name: str | None
    os_family: str
    os_name: str
    os_version: str
    arch: str
    agent_version: str
    status: Literal["online", "offline"]
    disabled: bool
    hardware_changed: bool
    reboot_required: bool
    last_seen_at: str | None
    last_ip: str | None
    state: Literal["online", "offline", "disabled"]
    pending_count: Annotated[int, Meta(description="Updates pending or approved.")]
    tags: list[str]
    attention: Annotated[list[str], Meta(description="Why it needs a look, if it does.")]


class AgentListQuery(Shape):
    q: Annotated[str | None, Meta(description="A part of the hostname or display name.")] = None
    os_family: str | None = None
    status: AgentState | None = None
    tag: str | None = None
    sort: Literal["hostname", "os", "status", "pending", "last_seen"] | None = None
    order: Literal["asc", "desc"] | None = None
    page: Annotated[int, Meta(ge=1)] | None = None


class AllAgents(Shape):
    """Every agent (when no parameter is given)."""

    agents: list[Agent]


class AgentPage(Shape):
    """One page of 100 agents (when any parameter is given)."""

    agents: list[AgentListRow]
    total: int
    page: int
    pages: int
    page_size: int


class AgentDeleted(Done):
    agent_id: str
    hostname: str


class Rebound(Done):
    agent_id: str
    machine_fingerprint: Annotated[str, Meta(description="The fingerprint now bound.")]


class TakeOverRequest(Shape):
    old_agent_id: Annotated[
        str, Meta(min_length=1, max_length=64, description="The record to take over.")
    ]


class TookOver(Done):
    agent_id: str
    took_over: str


Tag = Annotated[str, Meta(min_length=1, max_length=200)]


class NewTag(Shape):
    tag: Tag


class TagAdded(Done):
    agent_id: str
    added: Annotated[bool, Meta(description="False when the agent had it already.")]


class NewTags(Shape):
    tags: Annotated[list[str], Meta(description="All of the agent's tags, replacing them.")]


class TagsSet(Done):
    agent_id: str
    tags: Annotated[list[str], Meta(description="As stored: lower case, sorted, unique.")]


class TagRemoved(Done):
    agent_id: str
    removed: Annotated[bool, Meta(description="False when the agent did not have it.")]


class DisabledChanged(Done):
    agent_id: str
    disabled: bool
    changed: Annotated[bool, Meta(description="False when it was so already.")]


class RapidModeRequest(Shape):
    seconds: Annotated[
        int,
        Meta(description=f"How long, 0-{agent_admin.RAPID_MAX_S} seconds; 0 turns it off."),
    ] = 600


class RapidModeAsked(Done):
    """The rapid_mode command that carries the request to the agent."""

    agent_id: str
    command: CommandRecord


class AgentCommands(Shape):
    """The agent's commands, newest first."""

    commands: list[CommandRecord]


class NewCommand(Shape):
    kind: Annotated[str, Meta(min_length=1, max_length=40, description="e.g. `echo`, `scan`.")]
    params: Annotated[dict[str, Any] | None, Meta(description="What the kind takes.")] = None
    idempotency_key: Annotated[
        str | None, Meta(description="The same as the Idempotency-Key header.")
    ] = None
