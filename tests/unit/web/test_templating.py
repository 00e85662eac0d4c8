"""The filters that turn stored values into words: relative times that round the way a
person would say them, wall-clock times in the display zone, and counted nouns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from web.templating import ago, counted, environment

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        # A 2 h token created half a second ago expires "in 2 h", not "in 1 h".
        (timedelta(hours=2) - timedelta(seconds=0.5), "in 2 h"),
        (timedelta(hours=2) - timedelta(minutes=1), "in 2 h"),
        (timedelta(hours=24) - timedelta(seconds=3), "in 1 d"),
        (timedelta(days=7) - timedelta(seconds=3), "in 7 d"),
        (timedelta(minutes=10) - timedelta(seconds=1), "in 10 min"),
        (timedelta(seconds=59.6), "in 1 min"),
        (timedelta(minutes=59, seconds=45), "in 1 h"),
        (timedelta(hours=23, minutes=40), "in 1 d"),
        (timedelta(seconds=30), "in 30 s"),
        (-timedelta(minutes=3, seconds=10), "3 min ago"),
        (-timedelta(minutes=89), "1 h ago"),
        (-timedelta(minutes=91), "2 h ago"),
        (-timedelta(hours=36), "2 d ago"),
        (timedelta(0), "0 s ago"),
    ],
)
def test_relative_times_round_to_the_nearest_unit(offset: timedelta, words: str) -> None:
    assert ago(NOW + offset, now=NOW) == words


def test_a_missing_time_reads_never() -> None:
    assert ago(None, now=NOW) == "never"
    assert ago("", now=NOW) == "never"


def test_local_shows_a_stored_utc_time_in_the_display_zone_on_both_sides_of_dst() -> None:
    template = environment.from_string("{{ at|local }}")
    # Berlin moves from CET (+1) to CEST (+2) at 01:00 UTC on 29 March 2026.
    assert template.render(at="2026-03-29T00:30:00Z", display_zone=BERLIN) == (
        "2026-03-29 01:30 CET"
    )
    assert template.render(at="2026-03-29T01:30:00Z", display_zone=BERLIN) == (
        "2026-03-29 03:30 CEST"
    )
    assert template.render(at="2026-03-29T01:30:00Z", display_zone=UTC) == "2026-03-29 01:30 UTC"


@pytest.mark.parametrize(
    ("n", "words"),
    [(0, "0 commands"), (1, "1 command"), (2, "2 commands"), (1234, "1,234 commands")],
)
def test_counted_nouns_agree_with_their_number(n: int, words: str) -> None:
    assert counted(n, "command") == words


def test_counted_shows_an_agents_odd_value_inert() -> None:
    assert counted("\x1b[31m4", "core") == "4 cores"
    html = environment.from_string('{{ n|counted("core") }}').render(n="<b>4</b>")
    assert html == "&lt;b&gt;4&lt;/b&gt; cores"


def test_counted_takes_an_irregular_plural() -> None:
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(10, "entry", "entries") == "10 entries"
    template = environment.from_string('{{ n|counted("entry", "entries") }}')
    assert template.render(n=1) == "1 entry"
