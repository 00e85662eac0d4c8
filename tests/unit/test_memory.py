"""The allocator setting serve makes before its threads start."""

from __future__ import annotations

import platform

import pytest

from appliance.memory import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_the_arena_limit() -> None:
    assert limit_malloc_arenas(2) is True
