"""Files the appliance writes are private to its user, and doctor says when they are not."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import key_file_for, run_cli, start_appliance, wait_for

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_database_backups_and_key_file_are_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run_cli("migrate", "--data-dir", str(data_dir)).returncode == 0
    running = start_appliance(data_dir)
    try:
        wait_for(lambda: (data_dir / "redflag.db-wal").exists(), 10, "the WAL file")
        made = run_cli("backup", "--data-dir", str(data_dir))
        assert made.returncode == 0, made.stderr
        backup = Path(made.stdout.strip().splitlines()[-1])
    finally:
        running.stop()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "backups") == 0o700
    private = [data_dir / "redflag.db", backup, key_file_for(data_dir)]
    private += [p for p in (data_dir / "backups").iterdir()]  # the pre-migration snapshot
    if (data_dir / "redflag.db-shm").exists():
        private.append(data_dir / "redflag.db-shm")
    assert {str(p): oct(mode(p)) for p in private} == {str(p): "0o600" for p in private}


def test_doctor_names_files_others_can_read_and_the_command_that_fixes_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    assert run_cli("migrate", "--data-dir", str(data_dir)).returncode == 0
    assert run_cli("backup", "--data-dir", str(data_dir)).returncode == 0
    # As an earlier release, or a copy made by hand, left them.
    data_dir.chmod(0o755)
    (data_dir / "redflag.db").chmod(0o644)

    found = run_cli("doctor", "--data-dir", str(data_dir))

    assert found.returncode == 1
    line = next(line for line in found.stdout.splitlines() if "file_modes" in line)
    assert line.startswith("[FAIL]")
    command = line.split("make them private: ")[1].split(" (install.sh")[0]
    assert command == f"chmod 700 {data_dir}; chmod 600 {data_dir / 'redflag.db'}"
    subprocess.run(command, shell=True, check=True)
    again = run_cli("doctor", "--data-dir", str(data_dir))
    assert "[ ok ] file_modes" in again.stdout, again.stdout
