"""Agent enrolment: a valid token plus proof of the agent's new key make an agent, with
the token's tags and those the host asked for, in one transaction.

Registering again with the same key returns the same agent (no duplicate, no seat, its
tags as they are: they are an admin's to change from then on).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid
from appliance.services import audit, tokens
from appliance.store import agent_listing
from appliance.store import agents as agents_store
from appliance.store import tokens as tokens_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import CLOCK_WINDOW_S, RegistrationRequest, b64decode
from kernel.sanitise import sanitise_text
from kernel.tags import MAX_TAGS

logger = logging.getLogger("redflag.enrolment")


class RegistrationRefused(Invalid):
    """Clock or tags wrong; `reason` is safe to tell the client, `field` names the part
    of the request and `detail` says what is wrong with it."""

    def __init__(self, reason: str, field: str, detail: str | None = None):
        super().__init__(reason, field)
        self.reason = reason
        self.detail = detail or reason


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    created: bool
    tags: tuple[str, ...] = ()


async def register_agent(db: Database, host: Actor, request: RegistrationRequest) -> Enrolled:
    """`host` is who asks (`Actor("host:NAME", source_ip)`). Raises RegistrationRefused
    (bad proof, clock) or tokens.TokenNotAccepted (recorded in the audit log first)."""
    request.verify_proof()  # SignatureInvalid propagates as a 400 at the edge
    skew = request.timestamp - int(host.at.timestamp())
    if abs(skew) > CLOCK_WINDOW_S:
        # The agent reads the number from `detail` (agent/enrol.py).
        detail = (
            f"{abs(skew)} s {'ahead of' if skew > 0 else 'behind'} the appliance's clock "
            f"(allowed: {CLOCK_WINDOW_S} s either way)"
        )
        raise RegistrationRefused(
            f"the agent's clock is {detail}; fix the host's time (NTP) and register again",
            "timestamp",
            detail,
        )
    facts = {k: sanitise_text(v, max_chars=253) for k, v in request.facts.to_json().items()}
    outcome = await db.write(_register, host, request, facts)
    if isinstance(outcome, tokens.TokenNotAccepted):
        # Committed so that the refusal is on record; now tell the client.
        raise outcome
    if outcome.created:
        log_event(
            logger,
            logging.INFO,
            "agent.registered",
            agent_id=outcome.agent_id,
            hostname=facts["hostname"],
        )
    return outcome


def _register(
    tx: Transaction, host: Actor, request: RegistrationRequest, facts: dict[str, str]
) -> Enrolled | tokens.TokenNotAccepted:
    public_key = b64decode(request.public_key)
    existing = agents_store.agent_id_for_key(tx.conn, public_key)
    if existing:
        tags = agent_listing.tags_of(tx.conn, [existing]).get(existing, [])
        return Enrolled(existing, created=False, tags=tuple(tags))
    try:
        token = tokens.claim_seat(tx.conn, request.token, now=host.at, host_tags=request.tags)
    except tokens.TokenNotAccepted as refusal:
        audit.record(
            tx.conn,
            Actor(f"host:{facts['hostname']}", host.source_ip, None, host.at),
            "agent.registration_refused",
            details={"reason": refusal.reason},
        )
        return refusal
    tags = sorted(set(token.tags) | set(request.tags))
    if len(tags) > MAX_TAGS:
        # Raised: the transaction rolls back, the seat is not taken.
        raise RegistrationRefused(
            f"the token's tags and the host's make {len(tags)}; an agent carries at most "
            f"{MAX_TAGS}",
            "tags",
        )
    agent_id = str(uuid.uuid4())
    at = iso(host.at)
    agents_store.insert_agent(
        tx.conn,
        agent_id=agent_id,
        facts=facts,
        registered_at=at,
        last_ip=host.source_ip,
        token_id=token.id,
    )
    agents_store.insert_key(tx.conn, agent_id, public_key, at)
    for tag in tags:
        agents_store.add_tag(tx.conn, agent_id, tag)
    tokens_store.record_use(tx.conn, token.id, agent_id, at, host.source_ip)
    audit.record(
        tx.conn,
        Actor.agent(agent_id, host.source_ip, host.at),
        "agent.registered",
        target=agent_id,
        details={
            "hostname": facts["hostname"],
            "token_id": token.id,
            "tags": tags,  # the token's, and those the host asked for:
            "host_tags": list(request.tags),
        },
    )
    tx.emit(
        "agent.registered",
        agent_id,
        {"hostname": facts["hostname"], "token_id": token.id, "created": True, "tags": tags},
        at,
    )
    return Enrolled(agent_id, created=True, tags=tuple(tags))
