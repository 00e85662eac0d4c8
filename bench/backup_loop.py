"""Backups of one data dir made back to back, each deleted once made, until SIGTERM:
the backup load that backup_bench.py runs beside the baseline server. It calls the
very function `redflag-appliance backup` calls, in a process of its own.

    python bench/backup_loop.py --data-dir DIR

Prints one line of JSON per backup made ({"seconds": ...}); exits 0 on SIGTERM once
the backup under way is done, 1 when a backup fails.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from appliance.services.backups import create_backup
from appliance.settings import load_settings

MAX_BACKUPS = 10_000  # a bound, far beyond any phase of the benchmark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings({"data_dir": args.data_dir})
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    for _ in range(MAX_BACKUPS):
        if stopping:
            break
        began = time.perf_counter()
        try:
            made = create_backup(settings)
        except Exception as exc:
            print(f"backup_loop: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"seconds": round(time.perf_counter() - began, 4)}), flush=True)
        made.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
