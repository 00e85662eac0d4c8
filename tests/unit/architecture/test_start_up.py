"""What keeps `serve` quick to become ready (bench/coldstart_bench.py): importing is most
of its start-up, so the pages' code (Jinja2, the views) waits for the first page
request, and the program's imports run without the cyclic garbage collector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run_python(code: str) -> str:
    """`code` in a fresh interpreter (this one has imported everything already)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_program_and_the_app_it_serves_import_no_page_code(tmp_path: Path) -> None:
    loaded = run_python(
        "import json, sys\n"
        "from pathlib import Path\n"
        "from appliance.cli import main\n"
        "from appliance.app import create_app\n"
        "from appliance.settings import Settings\n"
        "try:\n"
        "    main(['--version'])  # imports every command, serve's too\n"
        "except SystemExit:\n"
        "    pass\n"
        f"home = Path({str(tmp_path)!r})\n"
        "create_app(Settings(data_dir=home / 'data', key_file=home / 'master.key'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    modules = json.loads(loaded.splitlines()[-1])  # after the line --version prints
    assert {"appliance.cli.serve", "appliance.app", "web.errors"} <= set(modules)
    page_code = [
        name
        for name in modules
        if name.split(".")[0] == "jinja2"
        or name in ("web.app", "web.templating", "web.charts")
        or name.startswith("web.views")
    ]
    assert page_code == []


def test_importing_the_program_runs_no_garbage_collection() -> None:
    """Before, about a hundred collections ran while the commands were imported (a
    tenth of the import time), and freed nothing."""
    collections = run_python(
        "import gc\n"
        "started = []\n"
        "gc.callbacks.append(lambda phase, info: started.append(phase == 'start'))\n"
        "from appliance.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sum(started))\n"
    )
    assert int(collections.split()[-1]) < 10
