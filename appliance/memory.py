"""How the appliance process uses the C allocator.

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
memory freed in one arena is not reused by another: with the database's four threads
and the event loop, RSS grew by a few MB more than the data needed (measured with
bench/fleet_bench.py: 58.6 instead of 61.2 MB after three minutes of 3,000 agents).
Two arenas are enough for a process whose threads mostly take turns on the GIL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(count: int = 2) -> bool:
    """Call before any thread starts; True when the C library took the setting (glibc
    only: elsewhere, and when MALLOC_ARENA_MAX is set by the operator, it is a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl has no mallopt
        return False
    return bool(mallopt(M_ARENA_MAX, count))
