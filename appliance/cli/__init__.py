"""`redflag-appliance`: the entry point. The program itself, with every operator command,
is appliance/cli/program.py; this module imports it the cheapest way it can."""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence
from types import ModuleType


def main(argv: Sequence[str] | None = None) -> int:
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
