"""The os-release file is read as Python 3.10+'s `platform.freedesktop_os_release` reads
it, also on Python 3.9, where the agent has only its own reader."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from agent.os_release import OS_RELEASE_FILES, os_release, parse_os_release, read_os_release


@pytest.mark.skipif(sys.version_info < (3, 10), reason="the standard library's is 3.10+")
def test_this_hosts_os_release_reads_as_the_standard_library_reads_it() -> None:
    if not any(Path(path).exists() for path in OS_RELEASE_FILES):
        pytest.skip("this host has no os-release file")
    assert read_os_release() == platform.freedesktop_os_release()


def test_this_hosts_os_release_names_its_distribution() -> None:
    if not any(Path(path).exists() for path in OS_RELEASE_FILES):
        pytest.skip("this host has no os-release file")
    release = os_release()
    assert release["ID"] and release["NAME"]
    assert release == read_os_release()


def test_values_lose_their_quotes_and_escapes() -> None:
    release = parse_os_release(
        [
            "# a comment\n",
            "\n",
            'NAME="Debian GNU/Linux"\n',
            "ID=debian\n",
            "VERSION_ID='11'\n",
            'PRETTY_NAME="say \\"hi\\" for \\$5 \\`now\\`"\n',
            "not a line we know\n",
        ]
    )
    assert release == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "11",
        "PRETTY_NAME": 'say "hi" for $5 `now`',
    }


def test_a_file_without_name_or_id_gets_the_formats_defaults() -> None:
    assert parse_os_release(["VERSION_ID=3.19\n"]) == {
        "NAME": "Linux",
        "ID": "linux",
        "PRETTY_NAME": "Linux",
        "VERSION_ID": "3.19",
    }


def test_the_second_file_is_read_when_the_first_is_missing(tmp_path: Path) -> None:
    fallback = tmp_path / "os-release"
    fallback.write_text("ID=alpine\n")
    release = read_os_release((str(tmp_path / "missing"), str(fallback)))
    assert release["ID"] == "alpine"


def test_a_host_with_neither_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot read"):
        read_os_release((str(tmp_path / "a"), str(tmp_path / "b")))
