"""Admin JSON API: the key hierarchy (status, rotation, revocation)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from appliance.api.auth import ADMIN, VIEWER
from appliance.api.endpoints import API, Call, Done, Failure, Shape, endpoint
from appliance.services.keys import KeyOperationRefused, UnknownKey


class SigningKey(Shape):
    key_id: str
    purpose: Literal["root", "signing"]
    state: Literal["active", "retiring", "retired", "expired", "revoked"]
    not_before: str
    not_after: str | None
    signer: Annotated[str, Meta(description="`file`, or the HSM/KMS that holds it.")]


class KeyStatus(Shape):
    """The root key, the signing keys and the key-set version agents must reach."""

    key_set_version: int
    root_fingerprint: Annotated[str, Meta(description="What registration tokens carry.")]
    keys: list[SigningKey]


@endpoint(
    "GET", f"{API}/keys", area="Keys", summary="Key status", requires=VIEWER, answer=KeyStatus
)
async def status(call: Call) -> KeyStatus:
    """The keys that sign commands and the root key that certifies them."""
    return msgspec.convert(await call.appliance.keys.status(), KeyStatus)


class RotateRequest(Shape):
    root: Annotated[bool, Meta(description="Rotate the root key instead.")] = False


class Rotated(KeyStatus, kw_only=True):
    """The new key, and the keys as they are now."""

    ok: Literal[True] = True
    new_key_id: str


@endpoint(
    "POST",
    f"{API}/keys/rotate",
    area="Keys",
    summary="Rotate the signing key (or the root key)",
    requires=ADMIN,
    body=RotateRequest,
    answer=Rotated,
    example={"root": False},
)
async def rotate(call: Call) -> Rotated:
    """Add a new signing key; the current ones stay valid for an overlap, then expire.
    With `root`, the old root key certifies a new one and is then forgotten."""
    keys = call.appliance.keys
    new_key = await (keys.rotate_root(call.actor) if call.body.root else keys.rotate(call.actor))
    return msgspec.convert({"new_key_id": new_key, **await keys.status()}, Rotated)


class Revoked(Done):
    key_set_version: Annotated[int, Meta(description="The key set published without it.")]


@endpoint(
    "POST",
    f"{API}/keys/{{key_id}}/revoke",
    area="Keys",
    summary="Revoke a signing key",
    requires=ADMIN,
    answer=Revoked,
    failures=[
        Failure(404, "no such key", when=UnknownKey),
        Failure(409, "the key cannot be revoked (e.g. the root key)", when=KeyOperationRefused),
    ],
)
async def revoke(call: Call) -> Revoked:
    """Withdraw a signing key now (a stolen one, say): agents refuse commands signed by
    it from their next check-in. Revoking the key in use first rotates to a new one."""
    version = await call.appliance.keys.revoke(call.actor, call.path("key_id"))
    return Revoked(key_set_version=version)
