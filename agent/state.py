"""The agent's state dir: its private key, identity and trust anchors, written atomically.

Files: `agent.key` (Ed25519 seed, mode 0600), `identity.json` (agent id and server),
`trust.json` (pinned root, key set, last accepted command sequence).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

KEY_FILE = "agent.key"
IDENTITY_FILE = "identity.json"
TRUST_FILE = "trust.json"


class StateError(RuntimeError):
    """The state dir is missing something or holds something unreadable."""


def write_atomically(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Write to a temporary file, fsync, rename: a crash leaves old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_or_create_key(state_dir: Path) -> SigningKey:
    """The agent's identity key. Created once; reused by every later registration, so
    registering the same host twice stays one agent."""
    path = state_dir / KEY_FILE
    if path.exists():
        try:
            return SigningKey(base64.b64decode(path.read_text().strip(), validate=True))
        except (ValueError, OSError) as exc:
            raise StateError(f"{path} is unreadable: {exc}") from exc
    key = SigningKey.generate()
    write_atomically(path, base64.b64encode(bytes(key)) + b"\n")
    return key


def read_json(state_dir: Path, name: str) -> dict[str, Any] | None:
    path = state_dir / name
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StateError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(value, dict):
        raise StateError(f"{path} does not hold a JSON object")
    return value


def write_json(state_dir: Path, name: str, value: dict[str, Any]) -> None:
    write_atomically(state_dir / name, json.dumps(value, indent=2, sort_keys=True).encode())
