"""The host's os-release file (which distribution and version it runs), read the way
`platform.freedesktop_os_release` reads it; that function is Python 3.10+ and the agent
also runs on 3.9."""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable, Sequence

OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
_LINE = re.compile(r"^(?P<name>[a-zA-Z0-9_]+)=(?P<quote>[\"']?)(?P<value>.*)(?P=quote)$")
_ESCAPED = re.compile(r"\\([\\\$\"'`])")


def os_release() -> dict[str, str]:
    """NAME, ID, VERSION_ID, ID_LIKE, ... of this host; empty when it has no such file."""
    try:
        if sys.version_info >= (3, 10):
            return platform.freedesktop_os_release()
        return read_os_release()
    except OSError:
        return {}


def read_os_release(paths: Sequence[str] = OS_RELEASE_FILES) -> dict[str, str]:
    """The first of `paths` that can be read, parsed; OSError when none can."""
    errno = None
    for path in paths:
        try:
            with open(path, encoding="utf-8") as lines:
                return parse_os_release(lines)
        except OSError as exc:
            errno = exc.errno
    raise OSError(errno, f"cannot read {' or '.join(paths)}")


def parse_os_release(lines: Iterable[str]) -> dict[str, str]:
    """KEY=value lines, values unquoted and unescaped, over the defaults the format
    gives for a missing NAME, ID and PRETTY_NAME."""
    info = {"NAME": "Linux", "ID": "linux", "PRETTY_NAME": "Linux"}
    for line in lines:
        if match := _LINE.match(line.rstrip("\n")):
            info[match["name"]] = _ESCAPED.sub(r"\1", match["value"])
    return info
