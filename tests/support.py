"""Helpers for tests: free ports, the CLI as a subprocess, a real appliance process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up after {seconds}s waiting for {what}")


def dump(path: Path) -> list[str]:
    """The database as SQL text, to compare before and after."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


APPLIANCE_CLI = [sys.executable, "-m", "appliance.cli"]


def key_file_for(data_dir: Path) -> Path:
    """Tests keep each data dir's key file beside it (never inside it)."""
    return data_dir.parent / "keys" / "master.key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `redflag-appliance` as a real subprocess, with the key file that belongs to
    its --data-dir (see `key_file_for`)."""
    env = dict(env or {})
    if "--data-dir" in args and "REDFLAG_KEY_FILE" not in env:
        env["REDFLAG_KEY_FILE"] = str(key_file_for(Path(args[args.index("--data-dir") + 1])))
    return subprocess.run(
        [*APPLIANCE_CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        check=False,
    )


@dataclass
class RunningAppliance:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    log_path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_appliance(
    data_dir: Path, *extra: str, port: int | None = None, deadline_s: float = 30
) -> RunningAppliance:
    """Start `redflag-appliance serve` on loopback (a free port unless given) and wait
    for /healthz. A free port can be taken by someone else before the appliance binds
    it; then it tries another (unless the port was given)."""
    for _attempt in range(3):
        running = _start_once(data_dir, extra, port or free_port(), deadline_s)
        if running.process.poll() is None or port or "address already in use" not in running.log():
            break
    if running.process.poll() is not None:
        raise AssertionError(
            f"appliance exited with {running.process.returncode}:\n{running.log()}"
        )
    return running


def _start_once(
    data_dir: Path, extra: tuple[str, ...], port: int, deadline_s: float
) -> RunningAppliance:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # as serve makes it
    log_path = data_dir.parent / f"appliance-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115 (lives as long as the process)
    process = subprocess.Popen(
        [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "REDFLAG_SCHEDULER_TICK_SECONDS": "0.2",
            "REDFLAG_KEY_FILE": str(key_file_for(data_dir)),
        },
    )
    log.close()
    running = RunningAppliance(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            return running  # the caller decides whether to try another port
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    running.stop()
    raise AssertionError(f"appliance did not answer /healthz in {deadline_s}s:\n{running.log()}")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: works even where the calling thread already
    runs an event loop (Playwright's sync API keeps one in the test thread)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class InProcessAppliance:
    """The real appliance app, served by uvicorn on loopback in a thread of the test
    process: the same code and HTTP as `serve`, without the cost of a new interpreter
    for each test. Tests that signal or kill the process use `start_appliance`."""

    def __init__(self, data_dir: Path, port: int) -> None:
        from appliance.settings import load_settings

        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"appliance-{port}.log"
        self.settings = load_settings(
            {
                "data_dir": data_dir,
                "key_file": key_file_for(data_dir),
                "port": port,
                "scheduler_tick_seconds": 0.2,
            },
            environ={},
        )
        self._server: Any = None
        self._thread: Any = None
        self._log_handler: Any = None
        self._lock: Any = None

    @property
    def process(self) -> subprocess.Popen[str]:
        raise AssertionError(
            "this appliance runs in the test process; use start_appliance() to signal one"
        )

    def start(self, deadline_s: float = 30) -> InProcessAppliance:
        import logging
        import threading

        import uvicorn

        from appliance.app import create_app
        from appliance.lockfile import DataDirLock
        from appliance.store.migrations import migrate
        from kernel.logs import JsonLineFormatter

        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        migrate(self.settings.database_path, self.settings.backups_dir)
        self._lock = DataDirLock(self.settings.lock_path, purpose="serve", url=self.url).acquire()
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(JsonLineFormatter())
        logging.getLogger().addHandler(handler)
        self._log_handler = handler
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            loop="asyncio",  # uvloop would become the whole test process's policy
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(
            lambda: self._server.started or not self._thread.is_alive(), deadline_s, "start-up"
        )
        if not self._server.started:
            self.stop()
            raise AssertionError(f"the appliance did not start:\n{self.log()}")
        return self

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        import logging

        if self._server is not None:
            # As `serve` does on its stop signal: held check-ins are answered at once.
            on_stop_signal = getattr(self._server.config.app.state, "on_stop_signal", None)
            if on_stop_signal is not None:
                on_stop_signal()
            self._server.should_exit = True
            self._thread.join(timeout=20)
            self._server = None
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return 0


def start_in_process(data_dir: Path) -> InProcessAppliance:
    return InProcessAppliance(data_dir, free_port()).start()
