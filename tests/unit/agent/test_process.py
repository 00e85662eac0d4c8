"""Running host tools: lists only, killed with their children at the timeout."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from agent import process


def test_a_shell_string_is_refused() -> None:
    with pytest.raises(TypeError, match="never a shell string"):
        process.run("echo hi; reboot", timeout_s=5)  # type: ignore[arg-type]


def test_output_is_captured_and_streamed_line_by_line() -> None:
    lines: list[str] = []
    done = process.run(
        [sys.executable, "-c", "print('a'); print('b')"], timeout_s=30, on_line=lines.append
    )
    assert done.returncode == 0 and done.stdout == "a\nb\n" and lines == ["a", "b"]


def test_a_hung_tool_and_its_children_are_killed_at_the_timeout() -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    started = time.monotonic()
    with pytest.raises(process.CommandTimedOut, match="killed after 1s"):
        process.run([sys.executable, "-c", script], timeout_s=1)
    assert time.monotonic() - started < 15
    survivors = subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, check=False)
    assert survivors.returncode == 1, "the child outlived the timeout"
