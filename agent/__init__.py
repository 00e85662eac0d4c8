"""RedFlag agent: scans a host for updates and installs what an admin approved."""

__version__ = "0.1.0"
