"""Who acted: built once at the edge (an API request, a web form, the scheduler, the
CLI, an agent) and handed to the services, which never rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kernel.clock import utc_now


@dataclass(frozen=True)
class Actor:
    """`name` is what the audit log and `created_by` columns show: "user:alice",
    "scheduler", "cli", "agent:<id>". `role` is a user's role (None otherwise).
    `at` is when the action happens: one time for every row it writes."""

    name: str
    source_ip: str = ""
    role: str | None = None
    at: datetime = field(default_factory=utc_now)
    # Room for the tenant the action belongs to, once there are tenants.

    @classmethod
    def user(cls, username: str, role: str, source_ip: str, at: datetime | None = None) -> Actor:
        return cls(f"user:{username}", source_ip, role, at or utc_now())

    @classmethod
    def system(cls, name: str, at: datetime | None = None) -> Actor:
        """The appliance itself: "scheduler", "cli", "setup", "mqtt"..."""
        return cls(name, "", None, at or utc_now())

    @classmethod
    def agent(cls, agent_id: str, source_ip: str, at: datetime | None = None) -> Actor:
        return cls(f"agent:{agent_id}", source_ip, None, at or utc_now())
