"""The architecture as rules a test can check: which package imports which, and
where SQL may run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FORBIDDEN = {
    "agent": {"appliance", "web"},
    "kernel": {"agent", "appliance", "web"},
    "appliance": {"agent", "web"},
    "web": {"agent"},
}
# The app factory puts the JSON API and the web UI together: it alone knows both.
COMPOSITION_ROOT = Path("appliance/app.py")
SQL_CALLS = {"execute", "executemany", "executescript"}


def modules(package: str) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((REPO / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_package_imports_one_it_must_not_know() -> None:
    found = [
        f"{path.relative_to(REPO)} imports {name}"
        for package, banned in FORBIDDEN.items()
        for path, tree in modules(package)
        for name in imported(tree)
        if name.split(".")[0] in banned
        and not (path.relative_to(REPO) == COMPOSITION_ROOT and name.startswith("web."))
    ]
    assert found == []


def test_only_the_store_runs_sql_in_the_appliance_and_the_web_ui() -> None:
    found = []
    for package in ("appliance", "web"):
        for path, tree in modules(package):
            relative = path.relative_to(REPO)
            if relative.parts[:2] == ("appliance", "store"):
                continue
            found += [
                f"{relative}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS
            ]
    assert found == []
