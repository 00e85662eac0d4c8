"""Agent releases, checked with python-tuf's ngclient before anything of them is used.

Trust starts at the appliance's TUF root version 1, which the agent takes once, only
with the appliance root key's signature over its hash (that key is pinned by the
registration token's fingerprint), and keeps read-only at
STATE/releases/trusted-root.json. Every check makes a fresh `Updater` from that file
under a file lock; ngclient's metadata cache (STATE/releases/metadata) is writable and
is never a source of trust: a root found there counts only if the chain from the
trusted root verifies it. Downloads are bounded in size (by the signed metadata) and in
time (a whole-file deadline, so a server sending a byte a second is given up on).

A failed check or download raises `ReleaseCheckFailed` with a reason a person can act
on; it never changes the installed agent (docs/releases.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.state import write_atomically
from agent.trust import TrustState
from kernel.protocol import ProtocolError, SignatureInvalid, SignedDocument, b64decode

RELEASES_DIR = "releases"
TRUSTED_ROOT = "trusted-root.json"
# Sizes no honest metadata of ours comes near; a larger answer is refused unread.
METADATA_LIMITS = {
    "root_max_length": 64 * 1024,
    "timestamp_max_length": 16 * 1024,
    "snapshot_max_length": 64 * 1024,
    "targets_max_length": 2 * 1024 * 1024,
}
DEFAULT_DEADLINE_S = 600.0  # a whole file, connection included
DEFAULT_SOCKET_TIMEOUT_S = 30


class ReleaseCheckFailed(RuntimeError):
    """A release could not be checked or fetched; nothing was changed. `reason` is a
    short code for reports, the message says what happened and what to do."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedRelease:
    """A release file whose length and SHA-256 match the signed targets metadata."""

    target_path: str
    version: str
    channel: str
    platform: str
    file: Path
    sha256: str


class Releases:
    """Release checks for one agent (its state dir and appliance)."""

    def __init__(
        self,
        state_dir: Path,
        server: str,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        socket_timeout_s: int = DEFAULT_SOCKET_TIMEOUT_S,
        user_agent: str = "redflag-agent",
    ):
        self.dir = state_dir / RELEASES_DIR
        self.server = server.rstrip("/")
        self.deadline_s = deadline_s
        self.socket_timeout_s = socket_timeout_s
        self.user_agent = user_agent

    @property
    def trusted_root_path(self) -> Path:
        return self.dir / TRUSTED_ROOT

    def has_trusted_root(self) -> bool:
        return self.trusted_root_path.is_file()

    def adopt_root(self, bootstrap: dict[str, Any], trust: TrustState) -> None:
        """Keep TUF root version 1 as the trusted root, once: only when the appliance's
        root key (the one this agent trusts) signed its hash. Never replaced later:
        newer roots are verified from it on every check."""
        if self.has_trusted_root():
            return
        try:
            root = str(bootstrap["root"]).encode()
            signed = SignedDocument.from_json(bootstrap["attestation"], "release attestation")
        except (KeyError, TypeError, ProtocolError) as exc:
            raise ReleaseCheckFailed("bootstrap_malformed", f"release trust root: {exc}") from None
        if signed.signer != trust.root_key_id:
            raise ReleaseCheckFailed(
                "bootstrap_untrusted",
                f"the release trust root is signed by {signed.signer}, not by the root key "
                f"this agent trusts ({trust.root_key_id}); it checks in first to learn a "
                "rotated root, then tries again",
            )
        try:
            statement = signed.verified_payload(b64decode(trust.root_public_key, "root key"))
        except SignatureInvalid:
            raise ReleaseCheckFailed(
                "bootstrap_untrusted", "the release trust root's signature does not verify"
            ) from None
        expected = {
            "purpose": "tuf-root",
            "version": 1,
            "sha256": hashlib.sha256(root).hexdigest(),
        }
        if statement != expected:
            raise ReleaseCheckFailed(
                "bootstrap_untrusted",
                "the release trust root is not the one the appliance's root key signed",
            )
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.trusted_root_path, root, mode=0o444)

    def fetch(self, target_path: str) -> VerifiedRelease:
        """Refresh the metadata, then download `target_path` (or use the copy already
        downloaded) and verify it; raises ReleaseCheckFailed."""
        with self._locked(), _reasons():
            updater = self._updater()
            updater.refresh()
            info = updater.get_targetinfo(target_path)
            if info is None:
                raise ReleaseCheckFailed(
                    "not_listed", f"{target_path} is not in the signed release list"
                )
            file = updater.find_cached_target(info) or updater.download_target(info)
            custom = info.custom if isinstance(info.custom, dict) else {}
            return VerifiedRelease(
                target_path=target_path,
                version=str(custom.get("version", "")),
                channel=str(custom.get("channel", "")),
                platform=str(custom.get("platform", "")),
                file=Path(file),
                sha256=info.hashes.get("sha256", ""),
            )

    def _updater(self) -> Any:
        """A fresh Updater for each check (ngclient's own advice), rooted in the
        read-only trusted root, never in the cache's root.json."""
        from tuf.ngclient import Updater, UpdaterConfig

        from agent.tuf_fetcher import BoundedFetcher

        try:
            trusted = self.trusted_root_path.read_bytes()
        except FileNotFoundError:
            raise ReleaseCheckFailed(
                "no_trusted_root",
                "no release trust root yet; the agent takes it from the appliance after "
                "registering",
            ) from None
        metadata_dir, targets_dir = self.dir / "metadata", self.dir / "downloads"
        for directory in (metadata_dir, targets_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(metadata_dir),
            metadata_base_url=f"{self.server}/tuf/metadata/",
            target_dir=str(targets_dir),
            target_base_url=f"{self.server}/tuf/targets/",
            fetcher=BoundedFetcher(self.deadline_s, self.socket_timeout_s, self.user_agent),
            config=UpdaterConfig(**METADATA_LIMITS),
            bootstrap=trusted,
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One check at a time per state dir (ngclient's cache is single-user)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@contextmanager
def _reasons() -> Iterator[None]:
    from tuf.api import exceptions

    # What each of python-tuf's refusals means here, most specific first.
    reasons = (
        (exceptions.ExpiredMetadataError, "expired", "signed release metadata has expired"),
        (exceptions.BadVersionNumberError, "rollback", "older release metadata was offered"),
        (exceptions.UnsignedMetadataError, "bad_signature", "release metadata is not signed"),
        (exceptions.LengthOrHashMismatchError, "tampered", "a download does not match"),
        (exceptions.DownloadLengthMismatchError, "too_large", "a download is larger than signed"),
        (exceptions.SlowRetrievalError, "too_slow", "a download was too slow"),
        (exceptions.DownloadHTTPError, "http_error", "the appliance refused a download"),
        (exceptions.DownloadError, "download_failed", "a download failed"),
        (exceptions.RepositoryError, "invalid_metadata", "release metadata is invalid"),
    )
    try:
        yield
    except ReleaseCheckFailed:
        raise
    except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
        reason, what = next((r, w) for kind, r, w in reasons if isinstance(exc, kind))
        raise ReleaseCheckFailed(
            reason, f"{what} ({type(exc).__name__}: {exc}); nothing was changed"
        ) from None
    except OSError as exc:
        raise ReleaseCheckFailed("local_error", f"release check: {exc}") from None
