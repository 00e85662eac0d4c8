"""What `redflag-agent` says when it cannot reach its appliance: one line naming the
address and what happened, exit code 1, and nothing saved."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

AGENT = [sys.executable, "-m", "agent"]
TOKEN = "rf_reg_" + "s" * 32 + "." + "a" * 32


def register(state_dir: Path, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, "register", "--state-dir", str(state_dir), "--server", server, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_closed_port_is_one_line_that_names_the_address(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    done = register(tmp_path / "state", f"http://127.0.0.1:{port}")

    assert done.returncode == 1
    assert done.stderr == (
        "redflag-agent: error: cannot reach the appliance: "
        f"connection refused by http://127.0.0.1:{port}\n"
    )
    assert not (tmp_path / "state" / "identity.json").exists()


def test_a_server_url_without_a_scheme_says_how_to_write_it(tmp_path: Path) -> None:
    done = register(tmp_path / "state", "redflag.lan:8080")

    assert done.returncode == 1
    assert done.stderr == (
        "redflag-agent: error: cannot reach the appliance: "
        "'redflag.lan:8080' is not a URL: write http://HOST:PORT or https://HOST\n"
    )
