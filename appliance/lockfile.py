"""The data-dir lock: one appliance process (or maintenance command) per data dir."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


class DataDirLocked(RuntimeError):
    """Another process holds the data dir; the message names its pid when known."""


class DataDirLock:
    """An flock on DATA/redflag.lock, released by the kernel if the holder dies."""

    def __init__(self, path: Path, purpose: str, url: str = ""):
        self.path = path
        self.purpose = purpose
        # Where a serving appliance answers, so that `doctor` can find its /readyz.
        self.url = url
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"{self.path.parent} is in use by {holder.describe()}; stop it first "
                "(e.g. 'systemctl stop redflag-appliance')"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.purpose} {self.url}".strip().encode() + b"\n")
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    purpose: str
    url: str

    def describe(self) -> str:
        if self.pid is None:
            return "another RedFlag process"
        return f"a running '{self.purpose}' (pid {self.pid})"


def lock_holder(path: Path) -> LockHolder | None:
    """Who holds the lock right now, or None when nobody does."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> LockHolder:
    words = os.pread(fd, 500, 0).decode(errors="replace").split()
    if len(words) >= 2 and words[0].isdigit():
        return LockHolder(int(words[0]), words[1], words[2] if len(words) > 2 else "")
    return LockHolder(None, "", "")
