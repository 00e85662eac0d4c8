"""A stand-in for apt-get, apt-mark and dpkg-query that behaves like the real tools
(same output lines as recorded from apt 2.x, same exit codes) over a small JSON state
file named by $FAKE_APT_STATE. Installed as those three names first on PATH."""

import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_APT_STATE"])
HEADER = "Reading package lists...\nBuilding dependency tree...\nReading state information..."


def load() -> dict:
    return json.loads(STATE.read_text())


def inst(name: str, state: dict) -> str:
    version, origin = state["candidates"][name]
    current = state["installed"].get(name)
    old = f"[{current}] " if current else ""
    return f"Inst {name} {old}({version} {origin} [amd64])"


def apt_get(args: list[str]) -> int:
    state = load()
    log = STATE.with_suffix(".calls")
    with log.open("a") as calls:
        calls.write(json.dumps(["apt-get", *args]) + "\n")
    if "update" in args:
        print("Hit:1 http://deb.debian.org/debian bookworm InRelease\nReading package lists...")
        return 0
    names = args[args.index("--") + 1 :] if "--" in args else []
    for name in names:
        if name not in state["installed"]:
            print(HEADER)
            print(f"E: Unable to locate package {name}", file=sys.stderr)
            return 100
    pending = [n for n, (v, _) in state["candidates"].items() if state["installed"].get(n) != v]
    if "-s" in args:
        print(HEADER)
        chosen = pending if "dist-upgrade" in args else [n for n in names if n in pending]
        for name in chosen:
            for removed in state.get("removes_with", {}).get(name, []):
                print(f"Remv {removed} [{state['installed'][removed]}]")
            print(inst(name, state))
        for name in chosen:
            print(
                inst(name, state)
                .replace("Inst", "Conf", 1)
                .replace(f"[{state['installed'].get(name)}] ", "")
            )
        return 0
    if "install" in args and state.get("install_output"):
        replay(state)
        for name in [n for n in names if n in pending]:
            state["installed"][name] = state["candidates"][name][0]
        STATE.write_text(json.dumps(state))
        return 0
    if "install" in args:
        print(HEADER)
        for name in [n for n in names if n in pending]:
            version, _ = state["candidates"][name]
            print(f"Preparing to unpack .../{name}_{version}_amd64.deb ...", flush=True)
            time.sleep(0.2)
            print(f"Unpacking {name} ({version}) over ({state['installed'][name]}) ...", flush=True)
            for removed in state.get("removes_with", {}).get(name, []):
                print(f"Removing {removed} ({state['installed'].pop(removed)}) ...", flush=True)
            time.sleep(0.2)
            print(f"Setting up {name} ({version}) ...", flush=True)
            state["installed"][name] = version
        STATE.write_text(json.dumps(state))
        return 0
    print("E: fake apt-get does not know " + " ".join(args), file=sys.stderr)
    return 100


def replay(state: dict) -> None:
    """Write the bytes a real `apt-get install` wrote (state "install_output", one of
    tests/fixtures/apt/*.stdout), a line at a time. With "hold_before", the line that
    contains it comes a second late (so the agent sends what came before) and the rest
    waits until the file "go_file" exists (60 s at most): a test can watch it run."""
    out = sys.stdout.buffer
    lines = Path(state["install_output"]).read_bytes().split(b"\n")
    hold = state.get("hold_before", "").encode()
    for number, line in enumerate(lines):
        if hold and hold in line:
            time.sleep(1.2)
        out.write(line if number == len(lines) - 1 else line + b"\n")
        out.flush()
        if hold and hold in line:
            go = Path(state["go_file"])
            deadline = time.monotonic() + 60
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.1)


def apt_mark(args: list[str]) -> int:
    if args == ["showhold"]:
        print("\n".join(load().get("held", [])))
        return 0
    return 1


def dpkg_query(args: list[str]) -> int:
    installed = load()["installed"]
    names = args[args.index("--") + 1 :] if "--" in args else list(installed)
    missing = 0
    for name in names:
        if name in installed:
            print(f"{name}\t{installed[name]}")
        else:
            print(f"dpkg-query: no packages found matching {name}", file=sys.stderr)
            missing = 1
    return missing


if __name__ == "__main__":
    tool = os.environ["FAKE_APT_TOOL"]
    handler = {"apt-get": apt_get, "apt-mark": apt_mark, "dpkg-query": dpkg_query}[tool]
    sys.exit(handler(sys.argv[1:]))
