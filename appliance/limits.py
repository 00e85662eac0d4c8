"""The appliance's rate limits, built from runtime settings and rebuilt when they
change. Health endpoints are never limited."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.ratelimit import RateLimiter


@dataclass
class Limits:
    checkin: RateLimiter = field(default_factory=lambda: RateLimiter(20 / 60, 10))
    events: RateLimiter = field(default_factory=lambda: RateLimiter(120 / 60, 30))
    registration: RateLimiter = field(default_factory=lambda: RateLimiter(10 / 60, 10))
    admin_writes: RateLimiter = field(default_factory=lambda: RateLimiter(120 / 60, 30))
    # Login attempts per source address, on top of the per-account lockout.
    logins: RateLimiter = field(default_factory=lambda: RateLimiter(10 / 60, 10))
    _source: dict[str, int] = field(default_factory=dict)

    def apply(self, tunables: dict[str, int]) -> None:
        """Take new per-minute rates; buckets restart only for limits that changed."""
        wanted = {
            "checkin": (tunables["agent_checkins_per_minute"], 2),
            "events": (tunables["agent_event_batches_per_minute"], 4),
            "registration": (tunables["registrations_per_minute"], 1),
            "admin_writes": (tunables["admin_writes_per_minute"], 4),
            "logins": (tunables["logins_per_minute"], 1),
        }
        for name, (per_minute, burst_divisor) in wanted.items():
            if self._source.get(name) == per_minute:
                continue
            setattr(self, name, RateLimiter(per_minute / 60, max(1, per_minute / burst_divisor)))
            self._source[name] = per_minute

    def rejected(self) -> dict[str, int]:
        return {
            name: getattr(self, name).rejected
            for name in ("checkin", "events", "registration", "admin_writes", "logins")
        }

    def per_minute(self) -> dict[str, int]:
        return dict(self._source)
