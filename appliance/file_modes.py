"""Files the appliance writes are private to its user: the data dir 0700, the database,
its WAL and shared-memory files, backups and the key file 0600. A database holds
password hashes, token hashes and the sealed signing keys; its backups the same."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from appliance.settings import Settings

PRIVATE_UMASK = 0o077


def make_new_files_private() -> None:
    """Whatever this process creates from now on is readable by its user only
    (SQLite creates the database, -wal and -shm with 0666 less the umask)."""
    current = os.umask(PRIVATE_UMASK)
    os.umask(current | PRIVATE_UMASK)


def too_open(settings: Settings) -> list[Path]:
    """Everything of the appliance's that others than its owner may read or enter."""
    found = []
    if settings.data_dir.is_dir() and _shared(settings.data_dir):
        found.append(settings.data_dir)
    candidates = [
        *(settings.data_dir / f"redflag.db{suffix}" for suffix in ("", "-wal", "-shm")),
        settings.key_file,
    ]
    if settings.backups_dir.is_dir():
        if _shared(settings.backups_dir):
            found.append(settings.backups_dir)
        candidates += sorted(settings.backups_dir.iterdir())
    found += [path for path in candidates if path.is_file() and _shared(path)]
    return found


def fix_command(paths: list[Path]) -> str:
    dirs = [shlex.quote(str(p)) for p in paths if p.is_dir()]
    files = [shlex.quote(str(p)) for p in paths if not p.is_dir()]
    commands = [f"chmod 700 {' '.join(dirs)}"] if dirs else []
    commands += [f"chmod 600 {' '.join(files)}"] if files else []
    return "; ".join(commands)


def _shared(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & PRIVATE_UMASK)
