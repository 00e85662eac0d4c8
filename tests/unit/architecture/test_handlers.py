"""Handlers are thin: they read input, call one service, answer. And they never build
who acted by hand: the edge does it once (appliance/api/auth.py `actor_of`,
web/auth.py `actor_of`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HANDLER_DIRS = ("appliance/api", "web/views")
MAX_LINES = 30


def handlers() -> list[tuple[str, ast.AsyncFunctionDef]]:
    """Every public coroutine of the API and page modules that takes the request (or
    the call an endpoint made of it): the route handlers."""
    found = []
    for folder in HANDLER_DIRS:
        for path in sorted((REPO / folder).glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if (
                    isinstance(node, ast.AsyncFunctionDef)
                    and not node.name.startswith("_")
                    and node.args.args
                    and node.args.args[0].arg in ("request", "call")
                ):
                    found.append((f"{path.relative_to(REPO)}:{node.name}", node))
    return found


def test_there_are_handlers_to_check() -> None:
    assert len(handlers()) > 80


def test_every_handler_is_at_most_thirty_lines() -> None:
    long = {
        name: node.end_lineno - node.lineno + 1
        for name, node in handlers()
        if node.end_lineno - node.lineno + 1 > MAX_LINES
    }
    assert long == {}


def test_no_handler_formats_an_actor_string() -> None:
    pattern = re.compile(r"""actor\s*=\s*f["']user:""")
    found = [
        str(path.relative_to(REPO))
        for folder in HANDLER_DIRS
        for path in (REPO / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert found == []
