"""`redflag-agent register`: verify the appliance against the token, then enrol.

Order matters: the root key is checked against the token's fingerprint BEFORE the
agent sends anything but a GET, and nothing is saved unless registration succeeded
(a key generated for an attempt that was refused is thrown away).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from agent import state
from agent.client import ApplianceClient
from agent.trust import TrustState, establish
from kernel.protocol import HostFacts, RegistrationRequest, b64encode, parse_registration_token

PENDING_KEY = "agent.key.pending"


@dataclass(frozen=True)
class Identity:
    agent_id: str
    server: str

    @classmethod
    def load(cls, state_dir: Path) -> Identity | None:
        raw = state.read_json(state_dir, state.IDENTITY_FILE)
        return cls(raw["agent_id"], raw["server"]) if raw else None


def register(
    state_dir: Path,
    server: str,
    token: str,
    facts: HostFacts,
    *,
    transport: Any = None,
    clock: Callable[[], float] | None = None,
) -> tuple[Identity, bool]:
    """Returns (identity, created). Raises ProtocolError, TrustError or ApplianceError
    with a message that says what to do; the state dir is then as it was."""
    _, token_fingerprint = parse_registration_token(token)
    options = {"transport": transport} | ({"clock": clock} if clock else {})
    with ApplianceClient(server, **options) as client:
        trust = establish(client.get("/trust"), token_fingerprint)
        key, pending = _key_for_attempt(state_dir)
        request = RegistrationRequest(
            token=token.strip(),
            public_key=b64encode(bytes(key.verify_key)),
            facts=facts,
            timestamp=int(client.clock()),
        )
        signed = RegistrationRequest(
            **{**vars(request), "proof": b64encode(key.sign(request.signed_part()).signature)}
        )
        try:
            answer = client.post("/agents/register", signed.to_json())
        except Exception:
            if pending:
                (state_dir / PENDING_KEY).unlink(missing_ok=True)
            raise
    identity = Identity(str(answer["agent_id"]), client.server)
    previous = Identity.load(state_dir)
    if previous and previous.agent_id == identity.agent_id:
        old = state.read_json(state_dir, state.TRUST_FILE)
        if old:  # same identity again: never lower the accepted sequence
            trust = TrustState(**{**vars(trust), "last_seq": int(old.get("last_seq", 0))})
    if pending:
        (state_dir / PENDING_KEY).replace(state_dir / state.KEY_FILE)
    state.write_json(state_dir, state.TRUST_FILE, trust.to_json())
    state.write_json(state_dir, state.IDENTITY_FILE, vars(identity))  # written last
    return identity, bool(answer.get("created"))


def _key_for_attempt(state_dir: Path) -> tuple[SigningKey, bool]:
    """The existing identity key, or a pending one kept only if registration works.
    A pending key left by a crash is reused, so a retry is still the same agent."""
    if (state_dir / state.KEY_FILE).exists():
        return state.load_or_create_key(state_dir), False
    pending = state_dir / PENDING_KEY
    if pending.exists():
        return SigningKey(base64.b64decode(pending.read_text().strip())), True
    key = SigningKey.generate()
    state.write_atomically(pending, base64.b64encode(bytes(key)) + b"\n")
    return key, True
