"""The endpoints agents call: trust bundle, registration, check-in, events.

Every call after registration is a signed request (kernel/protocol.py); the JSON body
is read once, verified, then parsed.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.auth import AGENT_SIGNATURE, PUBLIC, REGISTRATION_TOKEN, client_ip
from appliance.api.endpoints import API, Failure, endpoint
from appliance.api.errors import ApiError
from appliance.api.protocol_shapes import EventBatch, EventsIngested, Registered, TrustBundle
from appliance.domain.actors import Actor
from appliance.ratelimit import RateLimiter
from appliance.runtime import Appliance
from appliance.services import agent_events, agents, enrolment, tokens
from appliance.services.agent_auth import AgentAuthFailed, AgentPrincipal, signature_headers
from kernel.protocol import CheckinAnswer, CheckinReport, ProtocolError, RegistrationRequest

_BAD_BODY = Failure(400, "the body is not valid JSON, or not what kernel/protocol.py reads")


def _appliance(request: Request) -> Appliance:
    return request.state.appliance


def _limit(limiter: RateLimiter, key: str, message: str) -> None:
    wait = limiter.acquire(key)
    if wait:
        raise ApiError(429, message, headers=RateLimiter.retry_after_header(wait))


def _json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ApiError(400, "the body is not valid JSON") from None


def _answer(answer: CheckinAnswer, hold_max_s: int) -> Response:
    return Response(
        msgspec.json.encode({**answer.to_json(), "hold_max_s": hold_max_s}),
        media_type="application/json",
    )


@endpoint(
    "GET",
    f"{API}/trust",
    area="Agent protocol",
    summary="The trust bundle",
    requires=PUBLIC,
    answer=TrustBundle,
    takes_request=True,
)
async def trust(request: Request) -> Response:
    """Public: the root key chain and the current signed key set. Agents check the root
    against the fingerprint in their registration token before believing any of it."""
    return JSONResponse(await _appliance(request).keys.trust_bundle())


@endpoint(
    "POST",
    f"{API}/agents/register",
    area="Agent protocol",
    summary="Register an agent",
    requires=REGISTRATION_TOKEN,
    body=RegistrationRequest,
    answer=Registered,
    status=201,
    also={200: "this key was registered before: the same agent"},
    failures=[
        _BAD_BODY,
        Failure(400, "the proof of key possession does not verify"),
        Failure(
            400,
            "the agent's clock is more than 300 s away (`errors[0].field`: `timestamp`), "
            "or the token's and the host's tags make more than 50 (`tags`)",
        ),
        Failure(
            401,
            'the token is not accepted: `errors[0]` is `{"field": "token", '
            '"message": REASON}`, REASON one of `malformed`, `unknown`, `expired`, '
            "`revoked`, `used up`",
        ),
        Failure(403, "the host asked for tags and the token does not allow host tags"),
    ],
    description=(
        "Enrol a host (what `redflag-agent register` sends): its new public key, its "
        "facts and a proof that it holds the private key, with a registration token, "
        "and the tags the host asks for besides the token's (`register --tag`)."
    ),
    takes_request=True,
)
async def register(request: Request) -> Response:
    appliance = _appliance(request)
    ip = client_ip(request)
    _limit(appliance.limits.registration, ip, "too many registration attempts from this address")
    try:
        registration = RegistrationRequest.from_json(_json(await request.body()))
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        host = Actor(f"host:{registration.facts.hostname}", ip)
        enrolled = await enrolment.register_agent(appliance.db, host, registration)
    except ProtocolError as exc:
        raise ApiError(400, f"proof of key possession: {exc}") from None
    except enrolment.RegistrationRefused as exc:
        raise ApiError(
            400, exc.reason, errors=[{"field": exc.field or "", "message": exc.detail}]
        ) from None
    except tokens.TokenNotAccepted as refusal:
        raise _token_refused(refusal) from None
    return JSONResponse(
        {
            "agent_id": enrolled.agent_id,
            "created": enrolled.created,
            "poll_interval_s": appliance.tunables["checkin_interval_s"],
            "tags": list(enrolled.tags),
        },
        status_code=201 if enrolled.created else 200,
    )


# What the appliance answers each refusal with (the agent names the cause from
# `errors[0].message`; older agents print this text).
_ASK_AGAIN = "ask your admin for a new one"
_TOKEN_REFUSALS = {
    "malformed": (401, f"registration token not accepted: not a token; {_ASK_AGAIN}"),
    "unknown": (
        401,
        f"registration token not accepted: this appliance does not know it; {_ASK_AGAIN}",
    ),
    "expired": (401, f"registration token not accepted: it has expired; {_ASK_AGAIN}"),
    "revoked": (401, f"registration token not accepted: it was revoked; {_ASK_AGAIN}"),
    "used up": (
        401,
        "registration token not accepted: all its seats are taken; ask your admin for a "
        "token with more seats",
    ),
    "host tags not allowed": (
        403,
        "this registration token gives hosts its own tags only; register without --tag",
    ),
}


def _token_refused(refusal: tokens.TokenNotAccepted) -> ApiError:
    status, text = _TOKEN_REFUSALS[refusal.reason]
    return ApiError(status, text, errors=[{"field": "token", "message": refusal.reason}])


async def _signed(request: Request) -> tuple[AgentPrincipal, bytes]:
    body = await request.body()
    try:
        principal = await _appliance(request).agent_auth.authenticate(
            request.method,
            request.scope["path"],
            signature_headers(request.scope["headers"]),
            body,
            client_ip(request),
        )
    except AgentAuthFailed as failure:
        raise ApiError(
            failure.status, str(failure), errors=[{"field": "signature", "message": failure.reason}]
        ) from None
    return principal, body


@endpoint(
    "POST",
    f"{API}/agent/checkin",
    area="Agent protocol",
    summary="Check in",
    requires=AGENT_SIGNATURE,
    body=CheckinReport,
    answer=CheckinAnswer,
    failures=[
        _BAD_BODY,
        Failure(401, "the agent is not registered (any more); register it again"),
        Failure(429, "check-ins too frequent; `Retry-After` says when"),
    ],
    description=(
        "The agent's heartbeat and state; the answer carries its signed commands (each a "
        "`SignedDocument` envelope), its poll interval and, when it is behind, the "
        "current trust bundle; with `agent_update_channel` on, `update` names a release "
        "to switch to (docs/releases.md)."
    ),
    takes_request=True,
)
async def checkin(request: Request) -> Response:
    principal, body = await _signed(request)
    appliance = _appliance(request)
    _limit(appliance.limits.checkin, principal.agent_id, "check-ins too frequent; wait")
    try:
        report = CheckinReport.from_json(_json(body))
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None
    hold_max = appliance.tunables["checkin_hold_s"]
    hold = min(report.hold_s, hold_max)
    if not hold:
        answer = await _check_in(request, appliance, principal.agent_id, report)
        return _answer(answer, hold_max)
    # Armed before it looks for commands, so that one created meanwhile rings it.
    with appliance.doorbell.armed(principal.agent_id) as bell:
        answer = await _check_in(request, appliance, principal.agent_id, report)
        # Up to 20 % shorter, so that agents held together come back spread out.
        waited = hold * random.uniform(0.8, 1.0)  # noqa: S311 (jitter, not a secret)
        if bell and answer.is_empty() and await bell.wait(waited, _disconnect(request)):
            answer = await _check_in(request, appliance, principal.agent_id, report)
    return _answer(answer, hold_max)


async def _check_in(
    request: Request, appliance: Appliance, agent_id: str, report: CheckinReport
) -> agents.CheckinAnswer:
    try:
        return await agents.check_in(
            appliance.db,
            appliance.directory,
            appliance.keys,
            appliance.presence,
            Actor.agent(agent_id, client_ip(request)),
            report,
            default_poll_interval_s=appliance.tunables["checkin_interval_s"],
            offers=appliance.update_offers,
        )
    except agents.AgentNotFound:
        raise ApiError(401, "unknown agent; register it again") from None


async def _disconnect(request: Request) -> None:
    """Completes when the client goes away (the body is read: what comes next is the
    disconnect), so a held check-in whose agent left frees its place at once."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@endpoint(
    "POST",
    f"{API}/agent/events",
    area="Agent protocol",
    summary="Send outbox events",
    requires=AGENT_SIGNATURE,
    body=EventBatch,
    answer=EventsIngested,
    failures=[
        _BAD_BODY,
        Failure(413, "more than 500 events in one batch"),
        Failure(429, "batches too frequent; `Retry-After` says when"),
    ],
    description=(
        "A batch of the agent's outbox events (scan reports, command output and results, "
        "system info). Ingest is idempotent on each event's UUID."
    ),
    takes_request=True,
)
async def post_events(request: Request) -> Response:
    principal, body = await _signed(request)
    _limit(_appliance(request).limits.events, principal.agent_id, "event batches too frequent")
    payload = _json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise ApiError(400, 'expected {"events": [...]}')
    if len(payload["events"]) > agent_events.MAX_EVENTS_PER_BATCH:
        raise ApiError(413, f"at most {agent_events.MAX_EVENTS_PER_BATCH} events per batch")
    appliance = _appliance(request)
    # With the disk nearly full, keep command results; the rest waits on the agent.
    shedding = appliance.disk_is_low()
    result = await agent_events.ingest(
        appliance.db,
        Actor.agent(principal.agent_id, client_ip(request)),
        payload["events"],
        only_command_events=shedding,
    )
    if result.deferred:
        appliance.shed_batches += 1
    return JSONResponse(
        result.as_json(), headers=appliance.limits.events.pacing_headers(principal.agent_id)
    )
