"""Server processes for the benchmarks: started on a free loopback port, awaited on
/healthz, measured through /proc, stopped with SIGTERM and then SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """A server did not start; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server process (all its threads) has used so far."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        # The command name may hold spaces; the fields after it are space-separated.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 20) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@contextmanager
def running_server(
    name: str,
    argv: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    deadline_s: float = 60,
) -> Iterator[ServerProcess]:
    """Start `argv` (which must listen on 127.0.0.1:`port` and answer GET /healthz),
    yield it once healthy, and always stop it."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    server = ServerProcess(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_healthy(server, deadline_s)
        yield server
    finally:
        server.stop()


def _wait_healthy(server: ServerProcess, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise ServerFailed(
        f"{server.name} did not answer /healthz in {deadline_s}s:\n{server.log_tail()}"
    )
