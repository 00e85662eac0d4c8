"""Shared fixtures: real temp data dirs, migrated databases, running appliances."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.settings import Settings, load_settings
from appliance.store.migrations import migrate
from tests.support import (
    InProcessAppliance,
    RunningAppliance,
    key_file_for,
    start_appliance,
    start_in_process,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an empty data dir of this test's own."""
    data_dir = tmp_path / "data"
    return load_settings({"data_dir": data_dir, "key_file": key_file_for(data_dir)}, environ={})


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """Settings whose database exists at the newest schema."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_path, settings.backups_dir)
    return settings


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[InProcessAppliance]:
    """The real appliance on its own data dir and port, served from this process."""
    running = start_in_process(tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def appliance_process(tmp_path: Path) -> Iterator[RunningAppliance]:
    """A real appliance process (`redflag-appliance serve`), for tests that signal it."""
    running = start_appliance(tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs to fill up; needs root (CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Commands run in-process install the JSON log handler; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SECRET_PATTERNS = re.compile(
    r"rf_(?:reg|api|ses)_(?!\[REDACTED\])[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


class _RecordKeeper(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The raw record, before the formatter redacts: code must not even try.
        fields = getattr(record, "fields", None)
        self.lines.append(f"{record.getMessage()} {fields!r} {record.exc_text or ''}")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Across the whole suite: no token or private key in any log line, whether logged
    in this process or by an appliance process the tests started."""
    keeper = _RecordKeeper()
    logging.getLogger().addHandler(keeper)
    yield
    logging.getLogger().removeHandler(keeper)
    leaks = [line for line in keeper.lines if SECRET_PATTERNS.search(line)]
    for log_file in tmp_path_factory.getbasetemp().rglob("appliance-*.log"):
        leaks += [
            line
            for line in log_file.read_text(errors="replace").splitlines()
            if SECRET_PATTERNS.search(line)
        ]
    assert not leaks, f"secrets in logs: {leaks[:3]}"
