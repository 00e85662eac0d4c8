"""Tool output is kept as the lines a terminal shows: real line breaks, a line rewritten
by carriage returns as it finally reads, and still no escapes or control characters."""

import re
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.sanitise import sanitise_output

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "apt"
# Recorded from a real `apt-get install` (see tests/fixtures/apt/README.md).
APT_INSTALL = (FIXTURES / "debian-bookworm-install-only-upgrade.stdout").read_bytes()
# Every control character but the line feed, and the invisible line/bidi controls.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
no_database = settings(database=None)


def test_the_recorded_apt_install_really_has_carriage_returns() -> None:
    assert APT_INSTALL.count(b"\r") > 15
    assert b"(Reading database ... 45%\r" in APT_INSTALL


def test_real_apt_output_becomes_the_lines_a_terminal_shows() -> None:
    lines = sanitise_output(APT_INSTALL.decode()).split("\n")
    assert lines[0] == "Reading package lists..."
    assert lines[7].startswith("Get:1 /tmp/") and lines[7].endswith("all 1.1 [1048 B]")
    assert lines[8:] == [
        "(Reading database ... 1244 files and directories currently installed.)",
        "Preparing to unpack .../redflag-probe_1.1_all.deb ...",
        "Unpacking redflag-probe (1.1) over (1.0) ...",
        "Setting up redflag-probe (1.1) ...",
        "",  # the output ends with a line break
    ]


def test_each_line_of_real_apt_output_on_its_own_is_its_last_state() -> None:
    """The agent reads the tool line by line (agent/process.py) and cleans each line
    before capping it, so the cap cannot cut off the final state."""
    lines = [sanitise_output(raw.decode(), max_chars=2000) for raw in APT_INSTALL.split(b"\n")]
    assert "(Reading database ... 1244 files and directories currently installed.)" in lines
    assert not any("\r" in line or "%" in line for line in lines)


def test_a_shorter_rewrite_leaves_the_rest_of_the_line_as_a_terminal_does() -> None:
    assert sanitise_output("Progress: 10%\rDone") == "Doneress: 10%"
    assert sanitise_output("Progress: 10%\r             \rDone") == "Done         "
    assert sanitise_output("50%\r100%") == "100%"


def test_windows_line_endings_and_trailing_carriage_returns_end_a_line() -> None:
    assert sanitise_output("a\r\nb\r\r\nc\r") == "a\nb\nc"
    assert sanitise_output("No items in catalog.\r\r\n") == "No items in catalog.\n"


def test_escapes_and_control_characters_other_than_the_line_break_stay_neutralised() -> None:
    raw = "\x1b[31mred\x1b[0m\x07 ok\x00\x08\x7f\x9b1m\nnext \u202eevil\u2028line \ud800"
    assert sanitise_output(raw) == "red ok\nnext \\u202eevil\\u2028line \ufffd"


def test_escapes_and_control_characters_take_no_room_in_a_rewritten_line() -> None:
    clean = sanitise_output("\x1b]0;title\x07visible\r\x1b[1mx\x00y")
    assert clean == "xysible"


def test_tabs_become_the_spaces_a_terminal_shows() -> None:
    assert sanitise_output("ab\tc\n\td") == "ab      c\n        d"


def test_a_literal_backslash_n_in_the_output_is_not_a_line_break() -> None:
    assert sanitise_output(r"copied C:\new\readme.txt") == r"copied C:\new\readme.txt"


def test_output_is_capped_with_a_marker() -> None:
    clean = sanitise_output("line\n" * 10_000, max_chars=100)
    assert clean.startswith("line\nline\n")
    assert clean.endswith(" chars]") and len(clean) < 130


def test_the_marker_counts_what_was_left_unread_when_rewrites_shrank_the_text() -> None:
    clean = sanitise_output("12%\r" * 50_000, max_chars=100)
    assert clean == f"12%…[+{4 * 50_000 - 4 * 100 - 256} chars]"


def test_hostile_carriage_return_floods_cost_linear_time() -> None:
    started = time.monotonic()
    for hostile in ("\r" * 2_000_000, "x" * 100_000 + "\r" * 100_000, "ab\r" * 500_000):
        assert len(sanitise_output(hostile, max_chars=16_000)) <= 16_100
    assert time.monotonic() - started < 5


@no_database
@given(st.text(max_size=300))
def test_any_output_keeps_no_control_character_but_the_line_break(text: str) -> None:
    clean = sanitise_output(text)
    assert UNSAFE.search(clean) is None
    assert sanitise_output(clean) == clean
