"""RedFlag appliance: web UI, JSON API, scheduler and embedded SQLite store in one process."""

__version__ = "0.1.0"
