"""Registry credentials from the host's docker config, read the way the docker CLI and
SDK read them: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, else the
legacy `~/.dockercfg`; "auths" entries by registry host. Credential helpers
(credsStore/credHelpers) are not run: an agent must not block on a keyring.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

from kernel.logs import log_event

logger = logging.getLogger("redflag.agent.scanners.docker")

DOCKER_HUB = "docker.io"


def config_file(explicit: Path | None = None) -> Path | None:
    """The file the docker CLI would read; an explicit path is taken as it is."""
    if explicit is not None:
        return explicit if explicit.exists() else None
    candidates = []
    if os.environ.get("DOCKER_CONFIG"):
        candidates.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    home = Path(os.environ.get("HOME") or Path.home())
    candidates += [home / ".docker" / "config.json", home / ".dockercfg"]
    return next((path for path in candidates if path.exists()), None)


def registry_host(key: str) -> str:
    """ "https://index.docker.io/v1/" -> "docker.io"; "ghcr.io" stays "ghcr.io"."""
    host = key.replace("http://", "").replace("https://", "").split("/", 1)[0]
    return DOCKER_HUB if host == f"index.{DOCKER_HUB}" else host


class RegistryCredentials:
    """Username/password per registry from the docker config's "auths"."""

    def __init__(self, config_path: Path | None = None):
        self._auths: dict[str, dict[str, str]] = {}
        self._helpers: dict[str, str] = {}
        self._store = ""
        path = config_file(config_path)
        if path is None:
            return
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            sections = {k: raw.get(k) for k in ("auths", "credsStore", "credHelpers")}
            # A file with none of the sections is a legacy one: all of it is "auths".
            self._auths = _entries(raw if not any(sections.values()) else sections["auths"])
            self._store = str(sections["credsStore"] or "")
            self._helpers = {str(k): str(v) for k, v in (sections["credHelpers"] or {}).items()}
        except (OSError, ValueError, AttributeError) as exc:
            log_event(
                logger,
                logging.WARNING,
                "agent.docker_config_unreadable",
                f"docker config unreadable, continuing without credentials: {exc}",
            )
            self._auths, self._helpers, self._store = {}, {}, ""

    def for_registry(self, domain: str) -> tuple[str, str] | None:
        entry = self._auths.get(registry_host(domain))
        if entry is None:
            entry = next(
                (e for key, e in self._auths.items() if registry_host(key) == domain), None
            )
        if entry and entry.get("username") and entry.get("password") is not None:
            return entry["username"], entry["password"]
        helper = self._helpers.get(domain) or self._store
        if helper:
            log_event(
                logger,
                logging.WARNING,
                "agent.docker_credential_helper",
                f"credentials for {domain} are in docker-credential-{helper}, "
                "which RedFlag does not run; put them in the config's auths",
                registry=domain,
            )
        return None

    def engine_auth(self, domain: str) -> dict[str, str]:
        """The X-Registry-Auth for a pull ({} for an anonymous pull)."""
        found = self.for_registry(domain)
        if not found:
            return {}
        return {"username": found[0], "password": found[1], "serveraddress": domain}


def _entries(auths: Any) -> dict[str, dict[str, str]]:
    """{registry key: {"username", "password"}} from "auths"; entries without a
    decodable "auth" (identity tokens, helper-only ones) carry no password."""
    if not auths:
        return {}
    if not isinstance(auths, dict):
        raise ValueError("auths is not a JSON object")
    entries: dict[str, dict[str, str]] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise ValueError(f"auths entry {str(key)[:80]!r} is not a JSON object")
        if "identitytoken" in entry or not entry.get("auth"):
            entries[str(key)] = {}
            continue
        try:
            decoded = base64.b64decode(entry["auth"]).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise ValueError(f"auths entry {str(key)[:80]!r}: auth is not base64") from exc
        username, colon, password = decoded.partition(":")
        if not colon:
            raise ValueError(f"auths entry {str(key)[:80]!r}: auth is not user:password")
        entries[str(key)] = {"username": username, "password": password}
    return entries
