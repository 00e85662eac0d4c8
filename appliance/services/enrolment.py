"""Agent enrolment: a valid token plus proof of the agent's new key make an agent.

Registering again with the same key returns the same agent (no duplicate, no seat).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid
from appliance.services import audit, tokens
from appliance.store import agents as agents_store
from appliance.store import tokens as tokens_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import CLOCK_WINDOW_S, RegistrationRequest, b64decode
from kernel.sanitise import sanitise_text

logger = logging.getLogger("redflag.enrolment")


class RegistrationRefused(Invalid):
    """Proof or clock wrong; `reason` is safe to tell the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    created: bool


async def register_agent(db: Database, host: Actor, request: RegistrationRequest) -> Enrolled:
    """`host` is who asks (`Actor("host:NAME", source_ip)`). Raises RegistrationRefused
    (bad proof, clock) or tokens.TokenNotAccepted (recorded in the audit log first)."""
    request.verify_proof()  # SignatureInvalid propagates as a 400 at the edge
    if abs(request.timestamp - int(host.at.timestamp())) > CLOCK_WINDOW_S:
        raise RegistrationRefused(
            f"the agent's clock is more than {CLOCK_WINDOW_S}s away from the appliance's; "
            "fix the host's time (NTP) and register again"
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
        return Enrolled(existing, created=False)
    try:
        token_id = tokens.claim_seat(tx.conn, request.token, now=host.at)
    except tokens.TokenNotAccepted as refusal:
        audit.record(
            tx.conn,
            Actor(f"host:{facts['hostname']}", host.source_ip, None, host.at),
            "agent.registration_refused",
            details={"reason": refusal.reason},
        )
        return refusal
    agent_id = str(uuid.uuid4())
    at = iso(host.at)
    agents_store.insert_agent(
        tx.conn,
        agent_id=agent_id,
        facts=facts,
        registered_at=at,
        last_ip=host.source_ip,
        token_id=token_id,
    )
    agents_store.insert_key(tx.conn, agent_id, public_key, at)
    tokens_store.record_use(tx.conn, token_id, agent_id, at, host.source_ip)
    audit.record(
        tx.conn,
        Actor.agent(agent_id, host.source_ip, host.at),
        "agent.registered",
        target=agent_id,
        details={"hostname": facts["hostname"], "token_id": token_id},
    )
    tx.emit(
        "agent.registered",
        agent_id,
        {"hostname": facts["hostname"], "token_id": token_id, "created": True},
        at,
    )
    return Enrolled(agent_id, created=True)
