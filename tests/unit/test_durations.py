"""Durations typed by operators: 90m, 12h, 30d, 2w."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.durations import UNITS, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        (" 24h ", timedelta(hours=24)),
    ],
)
def test_a_number_and_a_unit_make_a_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "1.5h", "-5m", "30 d", "30D", "1h30m", "٣d"])
def test_anything_else_is_refused_with_an_example_of_what_works(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90m, 12h or 30d"):
        parse_duration(text)


def test_zero_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0d")


def test_a_duration_too_long_to_represent_says_so() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("999999999w")


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(sorted(UNITS)))
def test_every_whole_number_of_every_unit_parses(count: int, unit: str) -> None:
    assert parse_duration(f"{count}{unit}") == count * UNITS[unit]


@given(st.text(max_size=30))
def test_arbitrary_text_gives_a_duration_or_a_value_error_and_nothing_else(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) > timedelta(0)
