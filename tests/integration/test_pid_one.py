"""`serve` as the first process of a PID namespace: PID 1 of a container. The kernel
delivers no signal to PID 1 that it has no handler for, so what stops an ordinary
process at once (SIGTERM before uvicorn has taken over the signals) is ignored there,
and `docker stop` waits for its SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import APPLIANCE_CLI, free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="a PID namespace needs root and util-linux's unshare",
    ),
]


@contextmanager
def serve_as_pid_1(data_dir: Path, key_file: Path, log: Path) -> Iterator[int]:
    """`serve` as PID 1 of a new PID namespace; yields its pid as seen from here."""
    with log.open("w") as output:
        outer = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", *APPLIANCE_CLI, "serve"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "REDFLAG_DATA_DIR": str(data_dir),
                "REDFLAG_KEY_FILE": str(key_file),
                "REDFLAG_PORT": str(free_port()),
            },
        )
    try:
        children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children")
        inner = int(wait_for(lambda: children.read_text().split(), 10, "the forked serve")[0])
        nspid = Path(f"/proc/{inner}/status").read_text().split("NSpid:")[1].splitlines()[0]
        assert nspid.split()[-1] == "1"  # its pid inside the namespace
        yield inner
    finally:
        if outer.poll() is None:
            outer.kill()  # --kill-child takes serve with it
            outer.wait(timeout=10)


def test_serve_as_pid_1_stops_on_sigterm_while_it_is_still_starting(tmp_path: Path) -> None:
    # A key file that is a FIFO holds start-up where a long migration would: serve has
    # migrated and now waits to read the key, with uvicorn's handlers not yet installed.
    key_file = tmp_path / "keys" / "master.key"
    key_file.parent.mkdir()
    os.mkfifo(key_file, 0o600)
    log = tmp_path / "serve.log"
    with serve_as_pid_1(tmp_path / "data", key_file, log) as pid:
        wait_for(lambda: "schema.migrated" in log.read_text(), 30, "serve to migrate")
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5, "serve to stop on SIGTERM")
        assert time.monotonic() - started < 5
    assert "interrupted" in log.read_text()
