"""Agent releases as a TUF repository (The Update Framework, python-tuf's metadata API).

The appliance is the repository: it holds one key per TUF role (root, targets,
snapshot, timestamp; sealed with the key file like the command-signing keys, and never
the same keys), signs every metadata version in the transaction that records the
change, and serves them byte for byte. Agents verify with python-tuf's ngclient
(agent/releases.py); their first TUF root is attested by the appliance's root key,
which the registration token's fingerprint pinned (docs/releases.md).

Why the versions of targets, snapshot and timestamp are at least the current Unix
time: an agent refuses any version lower than one it has seen (a rollback). A
database restored from an older backup would otherwise sign lower versions than the
agents hold and freeze every agent's updates; a version taken from the clock is above
anything signed before the restore. Root versions must go up by one (the agents walk
them in order), so a root is only signed when a key changes or it nears its expiry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, Signer, SSlibKey
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, Invalid, NotFound
from appliance.services import audit
from appliance.signers import FileSigner, KeyEncryptionKey
from appliance.store import releases as store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, parse_iso, utc_now
from kernel.logs import log_event
from kernel.protocol import canonical_json

logger = logging.getLogger("redflag.releases")

ROLES = ("root", "targets", "snapshot", "timestamp")
# How long each role's metadata is valid. The timestamp is short so that a frozen
# appliance (or someone replaying its old answers) is noticed within a day.
LIFETIMES = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=30),
    "timestamp": timedelta(days=1),
}
# Re-signed by the scheduler once less than this part of its lifetime is left.
RENEW_WHEN_LEFT = 0.5
# The dashboard warns once a role's metadata expires within this.
EXPIRY_WARNING = timedelta(hours=12)

CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
PLATFORM = re.compile(r"^(any|linux-(any|x86_64|aarch64|armv7l)|windows-(any|amd64))$")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,3}([.+-]?[A-Za-z0-9]+){0,4}$")
ARTIFACT_SUFFIXES = (".tar.gz", ".whl", ".zip")
MAX_ARTIFACT_BYTES = 200 * 1024 * 1024
_METADATA_NAME = re.compile(r"^(?:(?P<version>[1-9][0-9]{0,18})\.)?(?P<role>[a-z]+)\.json$")


class ReleaseRefused(Invalid):
    """A release that cannot be published; `field` names the bad input."""

    def __init__(self, field: str, message: str):
        super().__init__(message, field)


class ReleaseExists(Conflict):
    pass


class UnknownRelease(NotFound):
    pass


@dataclass(frozen=True)
class Release:
    id: int
    version: str
    channel: str
    platform: str
    target_path: str
    sha256: str
    length: int
    published_at: str
    published_by: str
    withdrawn_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> Release:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class RoleSigner(Signer):
    """A securesystemslib signer over one of our sealed Ed25519 keys (PyNaCl): the
    appliance needs neither `cryptography` nor key files of another format."""

    def __init__(self, signer: FileSigner):
        self._signer = signer
        self._public_key = tuf_key(signer.public_key)

    @property
    def public_key(self) -> Key:
        return self._public_key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public_key.keyid, self._signer.sign(payload).hex())

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key, secrets_handler=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError("release keys are loaded from the database")


def tuf_key(public_key: bytes) -> SSlibKey:
    """The TUF description of an Ed25519 public key; its id is the SHA-256 of its
    canonical JSON, as the TUF specification suggests."""
    value = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public_key.hex()}}
    key_id = hashlib.sha256(encode_canonical(value).encode()).hexdigest()
    return SSlibKey(key_id, "ed25519", "ed25519", {"public": public_key.hex()})


def target_path(version: str, channel: str, platform: str, suffix: str) -> str:
    return f"agent/{channel}/{platform}/redflag-agent-{version}{suffix}"


def parse_metadata_name(name: str) -> tuple[str, int | None] | None:
    """('targets', 7) for '7.targets.json', ('timestamp', None) for 'timestamp.json';
    None for anything else."""
    match = _METADATA_NAME.match(name)
    if match is None or match["role"] not in ROLES:
        return None
    version = int(match["version"]) if match["version"] else None
    if (version is None) != (match["role"] == "timestamp"):
        return None  # consistent snapshots: only the timestamp is asked for unversioned
    return match["role"], version


class ReleaseRepository:
    """The TUF repository of agent releases; one per running appliance or CLI."""

    def __init__(
        self,
        db: Database,
        kek: KeyEncryptionKey,
        releases_dir: Path,
        clock: Callable[[], datetime] = utc_now,
        lifetimes: dict[str, timedelta] | None = None,
    ):
        self.db = db
        self.kek = kek
        self.releases_dir = releases_dir
        self.clock = clock
        self.lifetimes = {**LIFETIMES, **(lifetimes or {})}

    # --- reading ------------------------------------------------------------------

    async def metadata_file(self, name: str) -> bytes | None:
        """A metadata file by the name an agent asks for, or None."""
        parsed = parse_metadata_name(name)
        if parsed is None:
            return None
        role, version = parsed
        if version is None:
            latest = await self.db.read(store.latest_metadata)
            return bytes(latest["timestamp"]["body"]) if "timestamp" in latest else None
        return await self.db.read(store.metadata, role, version)

    async def target_file(self, path: str) -> Path | None:
        """The file of a listed release, by its hash-prefixed name ('<sha256>.<name>' in
        the directory of its target path), or None."""
        directory, _, name = path.rpartition("/")
        digest, dot, rest = name.partition(".")
        if not dot or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        row = await self.db.read(store.release_by_path, f"{directory}/{rest}")
        if row is None or row["sha256"] != digest:
            return None
        file = self.releases_dir / digest
        return file if file.is_file() else None

    async def releases(self) -> list[Release]:
        return [Release.from_row(r) for r in await self.db.read(store.all_releases)]

    async def status(self) -> dict[str, Any]:
        """Each role's newest version, its expiry and whether it needs attention."""
        latest = await self.db.read(store.latest_metadata)
        now = self.clock()
        roles = []
        for role in ROLES:
            row = latest.get(role)
            expires = parse_iso(row["expires_at"]) if row else None
            roles.append(
                {
                    "role": role,
                    "version": row["version"] if row else 0,
                    "expires_at": row["expires_at"] if row else None,
                    "expired": expires is not None and expires <= now,
                    "expires_soon": expires is not None and expires - now < EXPIRY_WARNING,
                }
            )
        return {"initialised": bool(latest), "roles": roles}

    async def bootstrap_statement(self) -> tuple[bytes, bytes]:
        """TUF root version 1 and the statement about it that the appliance's root key
        signs for agents (who trust that key through their registration token)."""
        first = await self.db.read(store.metadata, "root", 1)
        if first is None:
            raise Conflict("the release repository is not initialised yet")
        statement = canonical_json(
            {"purpose": "tuf-root", "version": 1, "sha256": hashlib.sha256(first).hexdigest()}
        )
        return first, statement

    async def install_manifest(self, channel: str) -> bytes:
        """The newest listed release of each platform on `channel`, for the one-line
        installer (which checks the appliance root key's signature over these bytes,
        then each build's length and SHA-256 before it installs anything)."""
        _check("channel", CHANNEL, channel, "lower-case letters, digits and '-', like stable")
        newest: dict[str, dict[str, Any]] = {}
        for row in await self.db.read(store.listed_releases):  # oldest first
            if row["channel"] != channel:
                continue
            directory, _, name = row["target_path"].rpartition("/")
            newest[row["platform"]] = {
                "version": row["version"],
                "target_path": row["target_path"],
                "url_path": f"/tuf/targets/{directory}/{row['sha256']}.{name}",
                "sha256": row["sha256"],
                "length": row["length"],
            }
        return canonical_json({"purpose": "agent-install", "channel": channel, "releases": newest})

    # --- changing -----------------------------------------------------------------

    async def ensure_initialised(self) -> bool:
        """Create the role keys and the first version of every role, once."""
        if await self.db.read(store.current_keys):
            return False
        now = self.clock()
        signers = {role: FileSigner.generate() for role in ROLES}

        def initialise(tx: Transaction) -> None:
            if store.current_keys(tx.conn):
                return  # another process did it meanwhile
            for role, signer in signers.items():
                self._insert_key(tx, role, signer, now)
            self._sign_root(tx, 1, {r: RoleSigner(s) for r, s in signers.items()}, [], now)
            self._sign_chain(tx, now)
            audit.record(
                tx.conn,
                Actor.system("system", now),
                "releases.initialised",
                target="release repository",
                details={r: tuf_key(s.public_key).keyid for r, s in signers.items()},
            )

        await self.db.write(initialise)
        log_event(logger, logging.INFO, "releases.initialised")
        return True

    async def publish(
        self, actor: Actor, artifact: Path, *, version: str, channel: str, platform: str
    ) -> Release:
        """Add a release: its file is stored under its SHA-256, then targets, snapshot
        and timestamp are signed anew in the transaction that records it."""
        _check("version", VERSION, version, "like 1.4.0 or 1.4.0rc1")
        _check("channel", CHANNEL, channel, "lower-case letters, digits and '-', like stable")
        _check("platform", PLATFORM, platform, "any, linux-x86_64, linux-aarch64, …")
        suffix = next((s for s in ARTIFACT_SUFFIXES if artifact.name.endswith(s)), None)
        if suffix is None:
            raise ReleaseRefused("file", f"{artifact.name}: expected a {ARTIFACT_SUFFIXES} file")
        digest, length = self._store_file(artifact)
        path = target_path(version, channel, platform, suffix)
        now = self.clock()

        def publish(tx: Transaction) -> int:
            # One query on the table's unique key (a withdrawn release counts: its
            # version may be on hosts), which the target path is made from.
            if store.release_named(tx.conn, version, channel, platform) is not None:
                raise ReleaseExists(
                    f"release {version} is already published on {channel} for {platform}; "
                    "publish a new version instead (a version never changes once agents may "
                    "have it)"
                )
            release_id = store.insert_release(
                tx.conn,
                version=version,
                channel=channel,
                platform=platform,
                target_path=path,
                sha256=digest,
                length=length,
                published_at=iso(now),
                published_by=actor.name,
            )
            self._sign_chain(tx, now)
            audit.record(
                tx.conn,
                actor,
                "release.published",
                target=path,
                details={"version": version, "sha256": digest, "length": length},
            )
            tx.emit(
                "release.published",
                str(release_id),
                {"version": version, "channel": channel, "platform": platform, "by": actor.name},
                iso(now),
            )
            return release_id

        release_id = await self.db.write(publish)
        return Release.from_row(await self.db.read(store.release_by_id, release_id))

    async def withdraw(self, actor: Actor, release_id: int) -> None:
        """Stop offering a release (agents that have it keep it)."""
        now = self.clock()

        def withdraw(tx: Transaction) -> None:
            if not store.withdraw_release(tx.conn, release_id, at=iso(now)):
                raise UnknownRelease(f"no listed release {release_id}")
            self._sign_chain(tx, now)
            audit.record(tx.conn, actor, "release.withdrawn", target=str(release_id))

        await self.db.write(withdraw)

    async def renew_expiring(self) -> list[str]:
        """Re-sign every role whose metadata nears its expiry (a scheduler job): an
        appliance left alone never lets its agents' update checks fail on expiry."""
        now = self.clock()
        latest = await self.db.read(store.latest_metadata)
        due = [
            role
            for role, row in latest.items()
            if parse_iso(row["expires_at"]) - now < self.lifetimes[role] * RENEW_WHEN_LEFT
        ]
        if not due:
            return []

        def renew(tx: Transaction) -> None:
            if "root" in due:
                current = store.latest_metadata(tx.conn)["root"]["version"]
                self._sign_root(tx, current + 1, self._signers(tx), [], now)
            self._sign_chain(tx, now)

        await self.db.write(renew)
        log_event(logger, logging.INFO, "releases.renewed", roles=due)
        return due

    async def rotate_key(self, actor: Actor, role: str) -> str:
        """Replace one role's key: a new root version lists it, signed by the old and
        the new root key, so agents move over without being told."""
        if role not in ROLES:
            raise ReleaseRefused("role", f"role must be one of {', '.join(ROLES)}")
        now = self.clock()
        new = FileSigner.generate()

        def rotate(tx: Transaction) -> None:
            signers = self._signers(tx)
            old_key_id = signers[role].public_key.keyid
            old_root = signers["root"]
            row = next(r for r in store.current_keys(tx.conn) if r["role"] == role)
            store.retire_key(tx.conn, row["key_id"], at=iso(now))
            self._insert_key(tx, role, new, now)
            signers[role] = RoleSigner(new)
            current = store.latest_metadata(tx.conn)["root"]["version"]
            also = [old_root] if role == "root" else []
            self._sign_root(tx, current + 1, signers, also, now)
            self._sign_chain(tx, now)
            audit.record(
                tx.conn,
                actor,
                "release.key_rotated",
                target=role,
                details={"old_key": old_key_id, "new_key": tuf_key(new.public_key).keyid},
            )

        await self.db.write(rotate)
        return tuf_key(new.public_key).keyid

    # --- inside a transaction -------------------------------------------------------

    def _signers(self, tx: Transaction) -> dict[str, RoleSigner]:
        return {
            row["role"]: RoleSigner(FileSigner.unseal(self.kek, bytes(row["private_key"])))
            for row in store.current_keys(tx.conn)
        }

    def _insert_key(self, tx: Transaction, role: str, signer: FileSigner, now: datetime) -> None:
        store.insert_key(
            tx.conn,
            key_id=tuf_key(signer.public_key).keyid,
            role=role,
            public_key=signer.public_key,
            private_key=signer.seal(self.kek),
            created_at=iso(now),
        )

    def _sign_root(
        self,
        tx: Transaction,
        version: int,
        signers: dict[str, RoleSigner],
        also: list[RoleSigner],
        now: datetime,
    ) -> None:
        keys = {s.public_key.keyid: s.public_key for s in signers.values()}
        roles = {role: Role([signers[role].public_key.keyid], 1) for role in ROLES}
        root = Root(
            version=version,
            expires=self._expiry("root", now),
            keys=keys,
            roles=roles,
            consistent_snapshot=True,
        )
        self._store(tx, Metadata(root), [signers["root"], *also], "root", now)

    def _sign_chain(self, tx: Transaction, now: datetime) -> None:
        """New targets (every listed release), snapshot and timestamp versions."""
        signers = self._signers(tx)
        floor = int(now.timestamp())
        latest = store.latest_metadata(tx.conn)

        def next_version(role: str) -> int:
            return max(floor, latest[role]["version"] + 1 if role in latest else 1)

        targets = Targets(version=next_version("targets"), expires=self._expiry("targets", now))
        for row in store.listed_releases(tx.conn):
            targets.targets[row["target_path"]] = TargetFile(
                length=row["length"],
                hashes={"sha256": row["sha256"]},
                path=row["target_path"],
                unrecognized_fields={
                    "custom": {
                        "version": row["version"],
                        "channel": row["channel"],
                        "platform": row["platform"],
                    }
                },
            )
        targets_body = self._store(tx, Metadata(targets), [signers["targets"]], "targets", now)
        snapshot = Snapshot(
            version=next_version("snapshot"),
            expires=self._expiry("snapshot", now),
            meta={"targets.json": MetaFile(version=targets.version, length=len(targets_body))},
        )
        snapshot_body = self._store(tx, Metadata(snapshot), [signers["snapshot"]], "snapshot", now)
        timestamp = Timestamp(
            version=next_version("timestamp"),
            expires=self._expiry("timestamp", now),
            snapshot_meta=MetaFile(
                version=snapshot.version,
                length=len(snapshot_body),
                hashes={"sha256": hashlib.sha256(snapshot_body).hexdigest()},
            ),
        )
        self._store(tx, Metadata(timestamp), [signers["timestamp"]], "timestamp", now)

    def _store(
        self,
        tx: Transaction,
        metadata: Metadata[Any],
        signers: list[RoleSigner],
        role: str,
        now: datetime,
    ) -> bytes:
        for signer in signers:
            metadata.sign(signer, append=True)
        body = metadata.to_bytes(JSONSerializer(compact=True))
        store.insert_metadata(
            tx.conn,
            role=role,
            version=metadata.signed.version,
            body=body,
            expires_at=iso(metadata.signed.expires),
            created_at=iso(now),
        )
        return body

    def _expiry(self, role: str, now: datetime) -> datetime:
        return (now + self.lifetimes[role]).astimezone(UTC).replace(microsecond=0)

    def _store_file(self, artifact: Path) -> tuple[str, int]:
        """Copy the artifact into the releases directory under its SHA-256 (written to a
        temporary name, flushed, then renamed: never a half file under a real name)."""
        try:
            length = artifact.stat().st_size
        except OSError as exc:
            raise ReleaseRefused("file", f"{artifact}: {exc.strerror}") from None
        if length > MAX_ARTIFACT_BYTES:
            raise ReleaseRefused("file", f"{artifact.name} is over {MAX_ARTIFACT_BYTES} bytes")
        self.releases_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, temporary = tempfile.mkstemp(dir=self.releases_dir, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, artifact.open("rb") as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.releases_dir / digest.hexdigest())
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest.hexdigest(), length


def _check(field: str, pattern: re.Pattern[str], value: str, example: str) -> None:
    if not pattern.fullmatch(value):
        raise ReleaseRefused(field, f"{field} {value!r} is not valid: {example}")
