"""What `redflag-agent` says when its --server is not a URL: one line saying how to
write one, exit code 1, and nothing saved. (Each reason a registration fails for, with
its own exit code, is in test_register_failures.py.)"""

from __future__ import annotations

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


def test_a_server_url_without_a_scheme_says_how_to_write_it(tmp_path: Path) -> None:
    done = register(tmp_path / "state", "redflag.lan:8080")

    assert done.returncode == 1
    assert done.stderr == (
        "redflag-agent: error: cannot reach the appliance: "
        "'redflag.lan:8080' is not a URL: write http://HOST:PORT or https://HOST\n"
    )
