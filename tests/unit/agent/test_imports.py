"""What starting the agent loads into memory: every module imported stays resident in
a daemon that idles most of its life (bench/agent_rss_bench.py measures the result)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Loaded only when a cycle needs them, or never: httpx and the docker SDK are no longer
# the agent's, nor http.client (with the email package); ssl waits for an https URL,
# psutil for the first system report, the SMART code for a host with smartctl.
NOT_AT_START = [
    "httpx",
    "docker",
    "requests",
    "http.client",
    "email",
    "ssl",
    "psutil",
    "agent.smart",
]


@pytest.mark.parametrize("module", ["agent.daemon", "agent.cli"])
def test_importing_the_agent_loads_neither_httpx_nor_psutil(module: str) -> None:
    code = f"import {module}, sys; print(sorted(set({NOT_AT_START!r}) & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
