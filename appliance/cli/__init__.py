"""`redflag-appliance`: the entry point. The program itself, with every operator command,
is appliance/cli/program.py; this module imports it the cheapest way it can."""

from __future__ import annotations

import functools
import gc
import platform
import sys
from collections.abc import Sequence
from types import ModuleType

# The agent in this distribution runs on 3.9, so pip installs it there too; this module
# must still parse on 3.9 to say so in one line instead of a traceback.
NEEDS_PYTHON = (3, 11)


def main(argv: Sequence[str] | None = None) -> int:
    if sys.version_info < NEEDS_PYTHON:
        print(
            f"redflag-appliance needs Python 3.11 or newer, but {sys.executable} is Python "
            f"{platform.python_version()}; install the appliance with a newer Python "
            "(only redflag-agent runs on this one)",
            file=sys.stderr,
        )
        return 1
    return _program().run(argv)


@functools.cache
def _program() -> ModuleType:
    """appliance/cli/program.py, imported with the cyclic garbage collector paused.

    Its commands import most of the appliance: tens of thousands of objects that live
    as long as the process. The collector would walk them over and over while they are
    made (a tenth of the import time) and free nothing; instead it waits, and they are
    then frozen out of every later collection."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        from appliance.cli import program
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return program
