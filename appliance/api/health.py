"""GET /healthz, /readyz and /metrics: no credentials, never rate limited."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from msgspec import Meta
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from appliance import __version__
from appliance.api.auth import PUBLIC
from appliance.api.endpoints import Call, Document, Done, Reply, Shape, endpoint
from appliance.scheduler import JobStatus


class Alive(Done):
    version: str


@endpoint("GET", "/healthz", area="Health", summary="Liveness", requires=PUBLIC, answer=Alive)
async def healthz(call: Call) -> Alive:
    """The process answers. Touches no database, never rate limited."""
    return Alive(version=__version__)


class Check(Shape):
    ok: bool
    detail: str
    value: int | float | str | None


class Readiness(Shape):
    """Each check, and the scheduler's jobs."""

    ok: bool
    checks: Annotated[
        dict[str, Check],
        Meta(description="database_writable, schema_current, disk_free, scheduler."),
    ]
    jobs: list[JobStatus]


@endpoint(
    "GET",
    "/readyz",
    area="Health",
    summary="Readiness",
    requires=PUBLIC,
    answer=Readiness,
    also={503: "not ready: at least one check failed (the same shape says which)"},
)
async def readyz(call: Call) -> Reply:
    """The database is writable, the schema current, the disk has room and the
    scheduler is alive; 503 when any is not."""
    report = await call.appliance.readiness()
    return Reply(msgspec.convert(report.as_json(), Readiness), status=200 if report.ok else 503)


@endpoint(
    "GET",
    "/metrics",
    area="Health",
    summary="Prometheus metrics",
    requires=PUBLIC,
    answer=Document("text/plain", f"The Prometheus text format (`{CONTENT_TYPE_LATEST}`)."),
)
async def metrics(call: Call) -> Response:
    """Counters and gauges for Prometheus: requests, agents, updates, refused
    signatures, shed writes, disk."""
    appliance = call.appliance
    await appliance.refresh_gauges()
    body = await asyncio.to_thread(generate_latest, appliance.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
