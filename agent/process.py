"""Running the host's tools: argument lists only (never a shell), a timeout after which
the whole process group is killed, output size capped, optional line streaming."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_CAPTURE_BYTES = 8 * 1024 * 1024


class CommandTimedOut(RuntimeError):
    """The tool ran past its timeout and was killed with its children."""


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def run(
    args: Sequence[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run `args` and wait. `on_line` receives stdout line by line as it comes
    (for streaming install output); stdout is captured as well."""
    if isinstance(args, str) or not args:
        raise TypeError("run() takes a non-empty list of arguments, never a shell string")
    started = time.monotonic()
    # POSIX: a session of its own, so a timeout kills the tool's children too.
    # Windows: a process group of its own, ended with `taskkill /T`.
    group = (
        {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        if os.name == "nt"
        else {"start_new_session": True}
    )
    process = subprocess.Popen(  # noqa: S603 (argument list, no shell)
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        **group,
    )
    out: list[bytes] = []
    err: list[bytes] = []

    def pump(stream: object, sink: list[bytes], stream_lines: bool) -> None:
        size = 0
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            size += len(raw)
            if size <= MAX_CAPTURE_BYTES:
                sink.append(raw)
            if stream_lines and on_line is not None:
                on_line(raw.decode(errors="replace").rstrip("\n"))

    readers = [
        threading.Thread(target=pump, args=(process.stdout, out, True), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, err, False), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise CommandTimedOut(f"{args[0]} killed after {timeout_s:g}s timeout") from None
    finally:
        for reader in readers:
            reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    return Completed(
        tuple(args),
        returncode,
        b"".join(out).decode(errors="replace"),
        b"".join(err).decode(errors="replace"),
        time.monotonic() - started,
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if os.name == "nt":  # Windows only: no process groups to signal
        subprocess.run(  # noqa: S603
            ["taskkill", "/T", "/F", "/PID", str(process.pid)],  # noqa: S607 (a system tool)
            capture_output=True,
            check=False,
        )
        process.wait(timeout=10)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
