"""Start-up configuration, built once from flags > environment > config file > defaults.

Runtime-tunable values (retention, thresholds) live in the database instead; see
`appliance.services.settings`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DATABASE_NAME = "redflag.db"
CONFIG_NAME = "config.toml"


class SettingsError(ValueError):
    """A start-up setting is missing or invalid; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("data"))
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    # How often the scheduler wakes up to look for due jobs.
    scheduler_tick_seconds: float = 30.0
    # The key that encrypts the signing keys at rest. Deliberately outside the data
    # dir: a copy of the data dir (or of a backup) alone does not give the keys.
    key_file: Path = field(default_factory=lambda: default_key_file())

    @property
    def database_path(self) -> Path:
        return self.data_dir / DATABASE_NAME

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "redflag.lock"


def default_key_file() -> Path:
    if os.geteuid() == 0:
        return Path("/etc/redflag/master.key")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "redflag" / "master.key"


ENV_PREFIX = "REDFLAG_"
_CONVERTERS: dict[str, Any] = {
    "data_dir": Path,
    "host": str,
    "port": int,
    "log_level": str,
    "scheduler_tick_seconds": float,
    "key_file": Path,
}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load_settings(
    flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge the sources in precedence order and validate the result.

    The config file is `<data_dir>/config.toml`, so the data dir itself can only come
    from a flag or the environment.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}

    env_values = {
        name: environ[ENV_PREFIX + name.upper()]
        for name in _CONVERTERS
        if ENV_PREFIX + name.upper() in environ
    }
    data_dir = Path(flags.get("data_dir") or env_values.get("data_dir") or Settings().data_dir)
    config_path = data_dir / CONFIG_NAME
    if config_path.exists():
        try:
            file_values = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{config_path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(file_values) - set(_CONVERTERS) - {"data_dir"})
        if unknown:
            raise SettingsError(f"{config_path}: unknown setting(s): {', '.join(unknown)}")
        values.update(file_values)
    values.update(env_values)
    values.update(flags)
    values["data_dir"] = data_dir

    converted: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            converted[name] = _CONVERTERS[name](raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"setting {name!r}: cannot use {raw!r}: {exc}") from exc
    settings = replace(Settings(), **converted)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if not 0 < settings.port < 65536:
        raise SettingsError(f"setting 'port': {settings.port} is not a TCP port (1-65535)")
    if settings.log_level not in _LOG_LEVELS:
        raise SettingsError(f"setting 'log_level': use one of {', '.join(_LOG_LEVELS)}")
    if settings.scheduler_tick_seconds <= 0:
        raise SettingsError("setting 'scheduler_tick_seconds': must be positive")
    data_dir = settings.data_dir.resolve()
    key_file = settings.key_file.resolve()
    if key_file.is_relative_to(data_dir):
        raise SettingsError(
            f"setting 'key_file': {settings.key_file} is inside the data dir; keep it "
            "elsewhere (e.g. /etc/redflag/master.key) so that a copy of the data dir "
            "does not carry the key that unlocks the signing keys"
        )


__all__ = ["Settings", "SettingsError", "load_settings"]
