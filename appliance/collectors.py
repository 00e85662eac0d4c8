"""What /metrics reports about the running appliance. Each collector registers itself
with `@collector`: a function of the running appliance that returns it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client.registry import Collector

from appliance.metrics import CountsCollector, GaugeCollector, SchedulerCollector
from appliance.services import backups

if TYPE_CHECKING:
    from appliance.runtime import Appliance

Make = Callable[["Appliance"], Collector]
COLLECTORS: list[Make] = []


def collector(make: Make) -> Make:
    COLLECTORS.append(make)
    return make


@collector
def scheduler(app: Appliance) -> Collector:
    return SchedulerCollector(app.scheduler)


@collector
def agent_auth_failures(app: Appliance) -> Collector:
    return CountsCollector(
        "redflag_agent_auth_failures",
        "Agent requests refused, by reason",
        "reason",
        lambda: app.agent_auth.failures,
    )


@collector
def rate_limited(app: Appliance) -> Collector:
    return CountsCollector(
        "redflag_rate_limited", "Requests answered 429, by limiter", "limiter", app.limits.rejected
    )


@collector
def rate_limits(app: Appliance) -> Collector:
    return CountsCollector(
        "redflag_rate_limit_per_minute",
        "Configured rate limits (settings *_per_minute)",
        "limit",
        app.limits.per_minute,
        gauge=True,
    )


@collector
def gauges(app: Appliance) -> Collector:
    return GaugeCollector(
        {
            "redflag_schema_version": (
                "Schema version of the database",
                lambda: app.schema_version,
            ),
            "redflag_disk_free_bytes": ("Free bytes under the data dir", app.disk_free),
            "redflag_disk_free_min_bytes": (
                "Threshold below which the appliance is not ready",
                lambda: app.tunables.get("disk_free_min_mb", 0) * 1024 * 1024,
            ),
            "redflag_shed_event_batches": (
                "Event batches refused with 503 because the disk is nearly full",
                lambda: app.shed_batches,
            ),
            "redflag_held_checkins": (
                "Agent check-ins held open now, waiting for a command",
                lambda: app.doorbell.held,
            ),
            "redflag_held_checkins_refused": (
                "Check-ins answered at once because the hold cap was reached",
                lambda: app.doorbell.refused,
            ),
            "redflag_last_backup_timestamp_seconds": (
                "Unix time of the newest backup file",
                lambda: _last_backup_time(app),
            ),
            "redflag_domain_events_published": (
                "Domain events the live pages were woken for",
                lambda: app.live_feed.published,
            ),
        }
    )


def _last_backup_time(app: Appliance) -> float | None:
    found = backups.list_backups(app.settings)
    return found[0].modified_at.timestamp() if found else None
