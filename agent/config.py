"""The agent's own settings: `<state dir>/agent.toml`, every key optional.

scan_interval_s = 3600          # how often scanners run
max_outbox_events = 50000
self_update_deadline_s = 300    # a new version that does not check in by then is undone
self_update_retry_s = 900       # after a download that failed for now (not a refusal)
[scanners.my-script]            # a scanner of your own: any program that prints
command = ["/usr/local/bin/x"]  # {"updates": [...]} as JSON on stdout
timeout_s = 120
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the agent runs on 3.9 and 3.10 too
    import tomli as tomllib

CONFIG_FILE = "agent.toml"


class ConfigError(ValueError):
    """agent.toml is invalid; the message names the key."""


@dataclass(frozen=True)
class CommandScannerConfig:
    name: str
    command: tuple[str, ...]
    timeout_s: float = 300.0


@dataclass(frozen=True)
class AgentConfig:
    scan_interval_s: float = 3600.0
    max_outbox_events: int = 50_000
    max_outbox_bytes: int = 64 * 1024 * 1024
    breaker_threshold: int = 3
    breaker_base_wait_s: float = 60.0
    breaker_max_wait_s: float = 3600.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    request_timeout_s: float = 30.0
    # How long a self-updated version has to check in before the old one comes back.
    self_update_deadline_s: float = 300.0
    self_update_retry_s: float = 900.0
    # Run `apt-get update` before each APT scan; unset means "only when root".
    apt_update: bool | None = None
    # Reboots change what a host is doing for everyone on it: off unless allowed here.
    allow_reboot: bool = False
    # Scanners not to run even though their tool exists, e.g. ["apt"].
    disabled_scanners: tuple[str, ...] = ()
    command_scanners: tuple[CommandScannerConfig, ...] = field(default_factory=tuple)


_NUMBERS = {
    "scan_interval_s": float,
    "max_outbox_events": int,
    "max_outbox_bytes": int,
    "breaker_threshold": int,
    "breaker_base_wait_s": float,
    "breaker_max_wait_s": float,
    "backoff_base_s": float,
    "backoff_max_s": float,
    "request_timeout_s": float,
    "self_update_deadline_s": float,
    "self_update_retry_s": float,
}


_SWITCHES = ("apt_update", "allow_reboot")


def load_config(state_dir: Path) -> AgentConfig:
    path = state_dir / CONFIG_FILE
    if not path.exists():
        return AgentConfig()
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "scanners":
            continue
        if key == "disabled_scanners":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: disabled_scanners must be a list of names")
            values[key] = tuple(value)
            continue
        if key in _SWITCHES:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {key} must be true or false")
            values[key] = value
            continue
        if key not in _NUMBERS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{path}: {key} must be a positive number")
        values[key] = _NUMBERS[key](value)
    scanners = []
    tables = raw.get("scanners") or {}
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: scanners must be tables: [scanners.NAME]")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: scanners.{name} must be a table")
        unknown = sorted(set(table) - {"command", "timeout_s"})
        if unknown:
            raise ConfigError(f"{path}: scanners.{name}: unknown setting(s) {', '.join(unknown)}")
        command = table.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(part, str) for part in command)
        ):
            raise ConfigError(f"{path}: scanners.{name}.command must be a list of strings")
        timeout = table.get("timeout_s", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{path}: scanners.{name}.timeout_s must be positive")
        scanners.append(CommandScannerConfig(name, tuple(command), float(timeout)))
    return AgentConfig(**values, command_scanners=tuple(scanners))
