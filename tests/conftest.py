"""Shared fixtures: real temp data dirs, migrated databases, running appliances."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.settings import Settings, load_settings
from appliance.store.migrations import migrate
from tests.support import RunningAppliance, key_file_for, start_appliance


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
def appliance(tmp_path: Path) -> Iterator[RunningAppliance]:
    """A real appliance process on its own data dir and port."""
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
