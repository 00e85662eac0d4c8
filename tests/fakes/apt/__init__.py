"""Fake apt-get/apt-mark/dpkg-query for end-to-end tests (see fake_apt.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install_fake_apt(bin_dir: Path, state: dict) -> Path:
    """Put the fake tools first on PATH in `bin_dir`; returns the state file."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_file = bin_dir / "apt-state.json"
    state_file.write_text(json.dumps(state))
    for tool in ("apt-get", "apt-mark", "dpkg-query"):
        script = bin_dir / tool
        script.write_text(
            f"#!{sys.executable}\nimport os, runpy, sys\n"
            f"os.environ.setdefault('FAKE_APT_STATE', {str(state_file)!r})\n"
            f"os.environ['FAKE_APT_TOOL'] = {tool!r}\n"
            f"runpy.run_path({str(HERE / 'fake_apt.py')!r}, run_name='__main__')\n"
        )
        script.chmod(0o755)
    return state_file


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
