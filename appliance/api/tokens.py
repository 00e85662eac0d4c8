"""Admin JSON API: registration tokens, which let new agents register."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from msgspec import Meta

from appliance.api.auth import ADMIN
from appliance.api.endpoints import API, Call, Done, Failure, Reply, Shape, endpoint
from appliance.api.errors import ApiError
from appliance.api.payload import duration
from appliance.services import tokens
from appliance.services.tokens import TokenUse
from kernel.clock import utc_now

T = TypeVar("T", bound=Shape)


class RegistrationToken(Shape):
    """A registration token (never its secret, which only its creation answer holds)."""

    id: int
    note: str
    seats_total: Annotated[int | None, Meta(description="null: unlimited.")]
    seats_used: int
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    state: Literal["active", "expired", "used up", "revoked"]
    tags: Annotated[list[str], Meta(description="Every host registering with it gets these.")]
    allow_host_tags: Annotated[
        bool, Meta(description="Whether hosts may add tags of their own (`register --tag`).")
    ]


def _token(info: tokens.TokenInfo, shape: type[T], **more: Any) -> T:
    fields = {**asdict(info), "tags": list(info.tags)}
    return shape(**fields, state=info.state(utc_now()), **more)


class RegistrationTokens(Shape):
    tokens: list[RegistrationToken]


@endpoint(
    "GET",
    f"{API}/tokens",
    area="Registration tokens",
    summary="List registration tokens",
    requires=ADMIN,
    answer=RegistrationTokens,
)
async def list_tokens(call: Call) -> RegistrationTokens:
    """Every registration token, with its seats and state."""
    found = await tokens.list_tokens(call.db)
    return RegistrationTokens(tokens=[_token(t, RegistrationToken) for t in found])


class NewRegistrationToken(Shape):
    seats: Annotated[int | None, Meta(description="How many agents may use it; default 1.")] = None
    expires: (
        Annotated[str, Meta(max_length=200, description="e.g. `24h`, `7d`; default 24h.")] | None
    ) = None
    note: Annotated[str, Meta(max_length=200, description="What it is for.")] | None = None
    tags: (
        Annotated[
            list[Annotated[str, Meta(max_length=200)]],
            Meta(max_length=50, description="Tags every host registering with it gets."),
        ]
        | None
    ) = None
    allow_host_tags: (
        Annotated[
            bool,
            Meta(
                description="Whether hosts may add tags of their own with `register --tag`; "
                "default true. False: a host that asks for tags is refused."
            ),
        ]
        | None
    ) = None


class RegistrationTokenCreated(RegistrationToken):
    """The new token: `token` is shown in this answer only."""

    token: Annotated[str, Meta(description="`rf_reg_<secret>.<root key fingerprint>`")]


@endpoint(
    "POST",
    f"{API}/tokens",
    area="Registration tokens",
    summary="Make a registration token",
    requires=ADMIN,
    body=NewRegistrationToken,
    answer=RegistrationTokenCreated,
    status=201,
    failures=[
        Failure(422, "expires is not a duration such as `24h`"),
        Failure(
            422,
            "seats, expires, note or a tag out of range",
            when=tokens.InvalidTokenRequest,
            field="{exc.field}",
            message="{exc.message}",
        ),
    ],
    example={"seats": 5, "expires": "24h", "note": "office laptops", "tags": ["office"]},
)
async def create_token(call: Call) -> Reply:
    """A token for `redflag-agent register --token ...`. It carries the fingerprint of
    the appliance's root key, so that agents verify the appliance on first contact."""
    body: NewRegistrationToken = call.body
    token, info = await tokens.create_token(
        call.db,
        call.actor,
        root_fingerprint=await call.appliance.keys.root_fingerprint(),
        seats=body.seats,
        expires_in=duration(body.expires, "expires"),
        note=body.note or "",
        tags=body.tags or [],
        allow_host_tags=body.allow_host_tags is not False,
    )
    created = _token(info, RegistrationTokenCreated, token=token)
    return Reply(created, status=201, headers={"Cache-Control": "no-store"})


class TokenRevoked(Done):
    revoked: int


@endpoint(
    "POST",
    f"{API}/tokens/{{token_id:int}}/revoke",
    area="Registration tokens",
    summary="Revoke a registration token",
    requires=ADMIN,
    answer=TokenRevoked,
    failures=[Failure(404, "no such token, or it is revoked already")],
)
async def revoke_token(call: Call) -> TokenRevoked:
    """No agent can register with it any more; agents that did stay registered."""
    token_id = call.path("token_id")
    revoked = await tokens.revoke_token(call.db, call.actor, token_id)
    if not revoked:
        raise ApiError(404, f"no active token {token_id}")
    return TokenRevoked(revoked=token_id)


class TokenUses(Shape):
    """A token and the registrations made with it (the newest 1,000)."""

    token: RegistrationToken
    uses: list[TokenUse]


@endpoint(
    "GET",
    f"{API}/tokens/{{token_id:int}}/uses",
    area="Registration tokens",
    summary="Who registered with a token",
    requires=ADMIN,
    answer=TokenUses,
    failures=[Failure(404, "no such token", when=tokens.TokenNotFound)],
)
async def token_uses(call: Call) -> TokenUses:
    """Each agent registered with the token: when, from which address."""
    token_id = call.path("token_id")
    info = await tokens.get_token(call.db, token_id)
    uses = await tokens.token_uses(call.db, token_id)
    return TokenUses(token=_token(info, RegistrationToken), uses=uses)
