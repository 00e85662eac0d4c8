"""Admin JSON API: agents (list, tags, rapid mode, disable, delete), their hardware
binding and their commands. The shapes are in agent_shapes.py."""

from __future__ import annotations

import msgspec

from appliance.api.agent_shapes import (
    AgentCommands,
    AgentDeleted,
    AgentDetail,
    AgentListQuery,
    AgentPage,
    AllAgents,
    DisabledChanged,
    NewCommand,
    NewTag,
    NewTags,
    RapidModeAsked,
    RapidModeRequest,
    Rebound,
    TagAdded,
    TagRemoved,
    TagsSet,
    TakeOverRequest,
    TookOver,
)
from appliance.api.auth import ADMIN, OPERATOR, VIEWER
from appliance.api.endpoints import API, Call, Failure, Reply, endpoint
from appliance.services import agent_admin, agent_pages, agents, commands
from appliance.services.commands import CommandRecord

AGENT = f"{API}/agents/{{agent_id}}"
_NO_SUCH_AGENT = Failure(404, "no such agent", when=agents.AgentNotFound, message="no such agent")


@endpoint(
    "GET",
    f"{API}/agents",
    area="Agents",
    summary="List agents",
    requires=VIEWER,
    query=AgentListQuery,
    answer=(AllAgents, AgentPage),
    example={"status": "attention", "sort": "pending", "order": "desc"},
)
async def list_agents(call: Call) -> AllAgents | AgentPage:
    """Without parameters: every agent, as full records. With any parameter: one page
    of 100 lines of the agents list, filtered and sorted, with pending-update counts."""
    query: AgentListQuery = call.query
    if query == AgentListQuery():
        return msgspec.convert({"agents": await agents.list_agents(call.db)}, AllAgents)
    found = await agent_pages.list_page(
        call.db,
        agent_pages.AgentListQuery(
            text=query.q or "",
            os_family=query.os_family or "",
            state=query.status or "",
            tag=query.tag or "",
            sort=query.sort or "hostname",
            descending=query.order == "desc",
            page=query.page or 1,
        ),
    )
    listed = {"agents": found.agents, "total": found.total, "page": found.page}
    listed |= {"pages": found.pages, "page_size": agent_pages.PAGE_SIZE}
    return msgspec.convert(listed, AgentPage)


@endpoint(
    "GET",
    AGENT,
    area="Agents",
    summary="One agent",
    requires=VIEWER,
    answer=AgentDetail,
    failures=[_NO_SUCH_AGENT],
)
async def get_agent(call: Call) -> AgentDetail:
    """An agent with its tags and its last system information."""
    return msgspec.convert(await agents.get_agent(call.db, call.path("agent_id")), AgentDetail)


@endpoint(
    "DELETE",
    AGENT,
    area="Agents",
    summary="Delete an agent",
    requires=ADMIN,
    answer=AgentDeleted,
    failures=[_NO_SUCH_AGENT],
)
async def delete_agent(call: Call) -> AgentDeleted:
    """The agent and everything it reported. Its key stops working at once, so the host
    must register again to come back."""
    agent_id = call.path("agent_id")
    hostname = await agent_admin.delete_agent(call.db, call.actor, agent_id)
    return AgentDeleted(agent_id=agent_id, hostname=hostname)


@endpoint(
    "POST",
    f"{AGENT}/rebind",
    area="Agents",
    summary="Accept an agent's new hardware",
    requires=ADMIN,
    answer=Rebound,
    failures=[
        _NO_SUCH_AGENT,
        Failure(409, "the agent's hardware has not changed", when=agents.NothingToRebind),
    ],
)
async def rebind(call: Call) -> Rebound:
    """Bind the agent to the machine fingerprint it now reports (after a new disk or
    board); its identity and history stay."""
    agent_id = call.path("agent_id")
    fingerprint = await agents.rebind_hardware(call.db, call.actor, agent_id)
    return Rebound(agent_id=agent_id, machine_fingerprint=fingerprint)


@endpoint(
    "POST",
    f"{AGENT}/take-over",
    area="Agents",
    summary="Move an old agent record's history to a re-installed host",
    requires=ADMIN,
    body=TakeOverRequest,
    answer=TookOver,
    failures=[
        Failure(
            404, "either agent does not exist", when=agents.AgentNotFound, message="no agent {exc}"
        ),
        Failure(409, "the two records are not of the same machine", when=agents.NothingToRebind),
    ],
    example={"old_agent_id": "0b7c1f9e-3d2a-4c8e-9f61-2a5d7e4b8c10"},
)
async def take_over(call: Call) -> TookOver:
    """A host re-installed with a new token registers as a new agent: this moves the
    old record's history (updates, installs, tags) to it and removes the old one."""
    new_id, old_id = call.path("agent_id"), call.body.old_agent_id
    await agents.take_over_record(call.db, call.actor, old_id, new_id)
    return TookOver(agent_id=new_id, took_over=old_id)


_BAD_TAG = Failure(422, "not a valid tag", when=agent_admin.InvalidTag, field="tag")


@endpoint(
    "POST",
    f"{AGENT}/tags",
    area="Agents",
    summary="Tag an agent",
    requires=OPERATOR,
    body=NewTag,
    answer=TagAdded,
    status=201,
    also={200: "the agent had the tag already"},
    failures=[_NO_SUCH_AGENT, _BAD_TAG],
    example={"tag": "web-servers"},
)
async def add_tag(call: Call) -> Reply:
    """Add one tag (lower case letters, digits, `-`, `_`, `.`)."""
    agent_id = call.path("agent_id")
    added = await agent_admin.add_tag(call.db, call.actor, agent_id, call.body.tag)
    return Reply(TagAdded(agent_id=agent_id, added=added), status=201 if added else 200)


@endpoint(
    "PUT",
    f"{AGENT}/tags",
    area="Agents",
    summary="Replace an agent's tags",
    requires=OPERATOR,
    body=NewTags,
    answer=TagsSet,
    failures=[
        _NO_SUCH_AGENT,
        Failure(422, "a tag is not valid", when=agent_admin.InvalidTag, field="tags"),
    ],
    example={"tags": ["web-servers", "office"]},
)
async def set_tags(call: Call) -> TagsSet:
    """Set all of the agent's tags at once; an empty list removes them all."""
    agent_id = call.path("agent_id")
    stored = await agent_admin.set_tags(call.db, call.actor, agent_id, call.body.tags)
    return TagsSet(agent_id=agent_id, tags=stored)


@endpoint(
    "DELETE",
    f"{AGENT}/tags/{{tag}}",
    area="Agents",
    summary="Remove a tag from an agent",
    requires=OPERATOR,
    answer=TagRemoved,
    failures=[_NO_SUCH_AGENT],
)
async def remove_tag(call: Call) -> TagRemoved:
    """Remove one tag; removing a tag the agent does not have changes nothing."""
    agent_id = call.path("agent_id")
    removed = await agent_admin.remove_tag(call.db, call.actor, agent_id, call.path("tag"))
    return TagRemoved(agent_id=agent_id, removed=removed)


async def _set_disabled(call: Call, disable: bool) -> DisabledChanged:
    agent_id = call.path("agent_id")
    changed = await agent_admin.set_disabled(call.db, call.actor, agent_id, disable)
    return DisabledChanged(agent_id=agent_id, disabled=disable, changed=changed)


@endpoint(
    "POST",
    f"{AGENT}/disable",
    area="Agents",
    summary="Disable an agent",
    requires=ADMIN,
    answer=DisabledChanged,
    failures=[_NO_SUCH_AGENT],
)
async def disable(call: Call) -> DisabledChanged:
    """Refuse the agent's requests (within seconds) until it is enabled again; its
    history stays."""
    return await _set_disabled(call, True)


@endpoint(
    "POST",
    f"{AGENT}/enable",
    area="Agents",
    summary="Enable an agent",
    requires=ADMIN,
    answer=DisabledChanged,
    failures=[_NO_SUCH_AGENT],
)
async def enable(call: Call) -> DisabledChanged:
    """Accept a disabled agent's requests again."""
    return await _set_disabled(call, False)


@endpoint(
    "POST",
    f"{AGENT}/rapid-mode",
    area="Agents",
    summary="Rapid mode: check in every few seconds for a while",
    requires=OPERATOR,
    body=RapidModeRequest,
    answer=RapidModeAsked,
    status=201,
    also={200: "the same Idempotency-Key again: the command made the first time"},
    idempotency_key=True,
    failures=[
        _NO_SUCH_AGENT,
        Failure(422, "seconds is not 0-3600", when=agent_admin.InvalidRapidMode, field="seconds"),
    ],
    example={"seconds": 600},
)
async def rapid_mode(call: Call) -> Reply:
    """Ask the agent to check in every few seconds for `seconds` (default 600), to
    watch it closely; 0 turns rapid mode off."""
    agent_id, key = call.path("agent_id"), call.idempotency_key
    command, created = await agent_admin.set_rapid_mode(
        call.db,
        call.actor,
        agent_id,
        call.body.seconds,
        idempotency_key=f"rapid-mode:{agent_id}:{key}" if key else None,
    )
    answer = RapidModeAsked(agent_id=agent_id, command=command)
    return Reply(answer, status=201 if created else 200)


@endpoint(
    "GET",
    f"{AGENT}/commands",
    area="Agents",
    summary="An agent's commands",
    requires=VIEWER,
    answer=AgentCommands,
)
async def list_commands(call: Call) -> AgentCommands:
    """Every command sent to the agent (an unknown agent has none)."""
    found = await commands.list_for_agent(call.db, call.path("agent_id"))
    return AgentCommands(commands=found)


@endpoint(
    "POST",
    f"{AGENT}/commands",
    area="Agents",
    summary="Send any command to an agent",
    requires=ADMIN,
    body=NewCommand,
    answer=CommandRecord,
    status=201,
    also={200: "the same idempotency key again: the command made the first time"},
    idempotency_key=True,
    failures=[
        Failure(
            422, "an unknown kind, bad parameters or no such agent", when=commands.InvalidCommand
        )
    ],
    example={"kind": "echo", "params": {"text": "hello"}},
)
async def create_command(call: Call) -> Reply:
    """Any command kind with any parameters: admins only. Operators install through
    /updates (approved updates only) and switch rapid mode through /rapid-mode."""
    body: NewCommand = call.body
    command, created = await commands.create_command(
        call.db,
        call.actor,
        call.path("agent_id"),
        body.kind,
        body.params or {},
        idempotency_key=call.idempotency_key,
    )
    return Reply(command, status=201 if created else 200)
