"""What the agent endpoints (agent_protocol.py) take and answer, for the API reference.

Their bodies are read by kernel/protocol.py's records (the agent must not need msgspec),
so the request shapes are those records themselves; the answers are declared here and
checked against real answers by tests/integration/web/test_api_reference.py."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, UnsetType

from appliance.api.endpoints import Shape
from kernel.protocol import Event, SignedDocument


class RootKey(Shape):
    key_id: str
    public_key: Annotated[str, Meta(description="Ed25519, base64url.")]


class TrustBundle(Shape):
    """The root key, the chain of root rotations since the agent's token, and the
    current signed key set. Agents check the root against the fingerprint in their
    registration token before believing any of it."""

    root: RootKey
    root_chain: Annotated[
        list[SignedDocument], Meta(description="Each later root, certified by the one before.")
    ]
    key_set: Annotated[SignedDocument, Meta(description="The signing keys, signed by the root.")]


class Registered(Shape):
    """The agent's id; it signs every later request with the key it registered."""

    agent_id: str
    created: Annotated[bool, Meta(description="False: this key was registered before.")]
    poll_interval_s: int
    tags: Annotated[
        list[str],
        Meta(
            description="The agent's tags: the token's and the host's (when `created` is "
            "false: its tags as they are now)."
        ),
    ]


class EventBatch(Shape):
    events: Annotated[list[Event], Meta(description="At most 500 outbox events, oldest first.")]


class RejectedEvent(Shape):
    uuid: str
    reason: str


class EventsIngested(Shape):
    """Which events the appliance has (the agent may delete them), which it refuses for
    good, and which to send again later (low disk)."""

    accepted: Annotated[list[str], Meta(description="UUIDs stored now or before.")]
    rejected: Annotated[list[RejectedEvent], Meta(description="Never send these again.")]
    deferred: list[str] | UnsetType = UNSET
    retry_after_s: int | UnsetType = UNSET
    reason: str | UnsetType = UNSET
