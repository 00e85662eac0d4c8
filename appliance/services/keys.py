"""The appliance's key hierarchy: a root key certifies versioned sets of signing keys.

- The first start creates a root key, a signing key and key set version 1.
- `rotate` adds a signing key; the old one stays valid for an overlap so that agents
  that were offline still accept commands queued for them.
- `revoke` removes a key at once and publishes a new key-set version without it
  (the emergency playbook: docs/key-rotation.md).
- `rotate_root` replaces the root; the old root signs the new one, so agents that were
  offline follow the chain.
Agents never accept a key set of a lower version than the one they hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, NotFound
from appliance.services import audit
from appliance.signers import FileSigner, KeyEncryptionKey, KeyFileError, Signer
from appliance.store import keys as keys_store
from appliance.store.database import Database, Transaction
from kernel.clock import Clock, iso, parse_iso, unix, utc_now
from kernel.logs import log_event
from kernel.protocol import (
    KeySet,
    PublishedKey,
    RootCertificate,
    SignedDocument,
    b64encode,
    canonical_json,
    fingerprint,
)

logger = logging.getLogger("redflag.keys")

DEFAULT_OVERLAP = timedelta(days=7)


class KeyOperationRefused(Conflict):
    """A key operation that cannot be done; the message says why."""


class UnknownKey(NotFound):
    pass


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    purpose: str
    public_key: bytes
    signer: str
    sealed: bytes | None
    not_before: datetime
    not_after: datetime | None
    created_at: datetime
    retired_at: datetime | None
    revoked_at: datetime | None
    certified_by: str | None
    certification: bytes | None

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        def when(value: str | None) -> datetime | None:
            return parse_iso(value) if value else None

        return cls(
            key_id=row["key_id"],
            purpose=row["purpose"],
            public_key=bytes(row["public_key"]),
            signer=row["signer"],
            sealed=row["private_key"],
            not_before=parse_iso(row["not_before"]),
            not_after=when(row["not_after"]),
            created_at=parse_iso(row["created_at"]),
            retired_at=when(row["retired_at"]),
            revoked_at=when(row["revoked_at"]),
            certified_by=row["certified_by"],
            certification=row["certification"],
        )

    def usable_at(self, moment: datetime) -> bool:
        return (
            self.revoked_at is None
            and self.not_before <= moment
            and (self.not_after is None or moment <= self.not_after)
        )

    def published(self) -> PublishedKey:
        return PublishedKey(
            key_id=self.key_id,
            public_key=b64encode(self.public_key),
            not_before=unix(self.not_before),
            not_after=unix(self.not_after) if self.not_after else None,
        )


def root_certificate_document(record: KeyRecord) -> str:
    certificate = RootCertificate(
        key_id=record.key_id,
        public_key=b64encode(record.public_key),
        previous_key_id=record.certified_by or "",
        issued_at=unix(record.created_at),
    )
    return canonical_json(vars(certificate)).decode()


class KeyService:
    """Everything about the appliance's own keys; one per running appliance or CLI."""

    def __init__(self, db: Database, kek: KeyEncryptionKey, clock: Clock = utc_now):
        self.db = db
        self.kek = kek
        self.clock = clock
        self._signers: dict[str, Signer] = {}
        self._bundle: tuple[int, dict[str, Any]] | None = None
        self._records: tuple[int, list[KeyRecord]] | None = None
        # Key changes may come from the CLI in another process: look again this often.
        self.version_ttl_s = 2.0
        self._version: tuple[int, float] | None = None

    # --- reading ----------------------------------------------------------------

    async def records(self) -> list[KeyRecord]:
        version = await self.key_set_version()
        if self._records and self._records[0] == version:
            return self._records[1]
        rows = await self.db.read(keys_store.all_keys)
        records = [KeyRecord.from_row(row) for row in rows]
        self._records = (version, records)
        return records

    async def root(self) -> KeyRecord:
        roots = [r for r in await self.records() if r.purpose == "root" and r.retired_at is None]
        if not roots:
            raise KeyOperationRefused("no root key: the appliance has not been initialised")
        return roots[-1]

    async def root_fingerprint(self) -> str:
        return fingerprint((await self.root()).public_key)

    async def key_set_version(self) -> int:
        now = time.monotonic()
        if self._version and now < self._version[1]:
            return self._version[0]
        version = await self.db.read(keys_store.latest_key_set_version)
        self._version = (version, now + self.version_ttl_s)
        return version

    async def trust_bundle(self) -> dict[str, Any]:
        """What an agent needs to verify commands: the root chain and the key set."""
        version = await self.key_set_version()
        if self._bundle and self._bundle[0] == version:
            return self._bundle[1]
        records = await self.records()
        roots = [r for r in records if r.purpose == "root"]
        latest = await self.db.read(keys_store.latest_key_set)
        if latest is None:
            raise KeyOperationRefused("no key set published yet")
        bundle = {
            "root": {"key_id": roots[0].key_id, "public_key": b64encode(roots[0].public_key)},
            "root_chain": [
                SignedDocument(
                    document=root_certificate_document(r),
                    signer=r.certified_by or "",
                    signature=b64encode(r.certification or b""),
                ).to_json()
                for r in roots[1:]
            ],
            "key_set": SignedDocument(
                document=latest["document"],
                signer=latest["root_key_id"],
                signature=b64encode(bytes(latest["signature"])),
            ).to_json(),
        }
        self._bundle = (version, bundle)
        return bundle

    async def current_signer(self) -> Signer:
        """The newest signing key usable now; commands are signed with it."""
        now = self.clock()
        usable = [
            r
            for r in await self.records()
            if r.purpose == "signing" and r.usable_at(now) and r.retired_at is None
        ]
        if not usable:
            raise KeyOperationRefused("no usable signing key; run 'redflag-appliance keys rotate'")
        return self._signer_for(usable[-1])

    def _signer_for(self, record: KeyRecord) -> Signer:
        if record.key_id not in self._signers:
            if record.signer != "file" or record.sealed is None:
                raise KeyOperationRefused(
                    f"key {record.key_id} is held by signer '{record.signer}', "
                    "which this installation does not provide"
                )
            self._signers[record.key_id] = FileSigner.unseal(self.kek, record.sealed)
        return self._signers[record.key_id]

    # --- changing -----------------------------------------------------------------

    async def ensure_initialised(self) -> bool:
        """Create the root key, a signing key and key set 1 on a fresh database."""
        if any(r.purpose == "root" for r in await self.records()):
            await self.check_key_file()
            return False
        now = self.clock()
        root = FileSigner.generate()
        signing = FileSigner.generate()

        def initialise(tx: Transaction) -> None:
            self._insert(tx, root, "root", now)
            self._insert(tx, signing, "signing", now)
            self._publish(tx, root, now)
            audit.record(
                tx.conn,
                Actor.system("system", now),
                "keys.initialised",
                target=root.key_id,
                details={"signing_key": signing.key_id},
            )

        await self.db.write(initialise)
        self._forget_cached()
        self._signers.update({root.key_id: root, signing.key_id: signing})
        log_event(
            logger,
            logging.INFO,
            "keys.initialised",
            root_key=root.key_id,
            signing_key=signing.key_id,
        )
        return True

    async def check_key_file(self) -> None:
        for record in await self.records():
            if record.sealed is not None and record.signer == "file":
                self.kek.unseal(record.sealed)  # raises KeyFileError with the fix
                return

    async def rotate(self, actor: Actor, *, overlap: timedelta = DEFAULT_OVERLAP) -> str:
        """Add a signing key; current ones stay valid for `overlap`, then expire."""
        now = self.clock()
        new = FileSigner.generate()
        root = await self._root_signer()
        previous = [
            r
            for r in await self.records()
            if r.purpose == "signing" and r.usable_at(now) and r.retired_at is None
        ]

        def rotate(tx: Transaction) -> None:
            for record in previous:
                keys_store.retire_key(
                    tx.conn,
                    record.key_id,
                    at=iso(now),
                    not_after=iso(now + overlap),
                    forget_private=True,
                )
            self._insert(tx, new, "signing", now)
            version = self._publish(tx, root, now)
            audit.record(
                tx.conn,
                actor,
                "keys.rotated",
                target=new.key_id,
                details={
                    "retired": [r.key_id for r in previous],
                    "overlap_s": int(overlap.total_seconds()),
                    "key_set_version": version,
                },
            )
            tx.emit(
                "key.rotated",
                new.key_id,
                {"purpose": "signing", "key_set_version": version, "by": actor.name},
                iso(now),
            )

        await self.db.write(rotate)
        self._forget_cached()
        self._signers[new.key_id] = new
        return new.key_id

    async def revoke(self, actor: Actor, key_id: str) -> int:
        """Withdraw a signing key now. Revoking the key in use first rotates to a new
        one with no overlap, so the appliance can keep sending commands."""
        now = self.clock()
        records = {r.key_id: r for r in await self.records()}
        record = records.get(key_id)
        if record is None:
            raise UnknownKey(f"no key {key_id!r}; 'redflag-appliance keys status' lists them")
        if record.purpose != "signing":
            raise KeyOperationRefused(
                "the root key is replaced with 'keys rotate-root', not revoked"
            )
        if record.revoked_at is not None:
            raise KeyOperationRefused(f"key {key_id} is already revoked")
        in_use = [
            r
            for r in records.values()
            if r.purpose == "signing"
            and r.usable_at(now)
            and r.retired_at is None
            and r.key_id != key_id
        ]
        if not in_use:
            await self.rotate(actor, overlap=timedelta(0))
        root = await self._root_signer()

        def revoke(tx: Transaction) -> int:
            keys_store.revoke_key(tx.conn, key_id, at=iso(now))
            version = self._publish(tx, root, now)
            audit.record(
                tx.conn, actor, "keys.revoked", target=key_id, details={"key_set_version": version}
            )
            tx.emit(
                "key.revoked",
                key_id,
                {"key_set_version": version, "by": actor.name},
                iso(now),
            )
            return version

        version = await self.db.write(revoke)
        self._forget_cached()
        self._signers.pop(key_id, None)
        return version

    async def rotate_root(self, actor: Actor) -> str:
        """Replace the root key; the old root certifies the new one, then is forgotten."""
        now = self.clock()
        old_record = await self.root()
        old = await self._root_signer()
        new = FileSigner.generate()
        record = KeyRecord(
            new.key_id,
            "root",
            new.public_key,
            "file",
            None,
            now,
            None,
            now,
            None,
            None,
            old.key_id,
            None,
        )
        certification = old.sign(root_certificate_document(record).encode())

        def rotate_root(tx: Transaction) -> None:
            self._insert(tx, new, "root", now, certified_by=old.key_id, certification=certification)
            keys_store.retire_key(
                tx.conn, old_record.key_id, at=iso(now), not_after=iso(now), forget_private=True
            )
            version = self._publish(tx, new, now)
            audit.record(
                tx.conn,
                actor,
                "keys.root_rotated",
                target=new.key_id,
                details={"previous_root": old.key_id, "key_set_version": version},
            )
            tx.emit(
                "key.rotated",
                new.key_id,
                {"purpose": "root", "key_set_version": version, "by": actor.name},
                iso(now),
            )

        await self.db.write(rotate_root)
        self._forget_cached()
        self._signers.pop(old.key_id, None)
        self._signers[new.key_id] = new
        return new.key_id

    async def _root_signer(self) -> Signer:
        return self._signer_for(await self.root())

    async def attest(self, statement: bytes) -> SignedDocument:
        """`statement` signed by the current root key, which every agent trusts (the
        release repository's first TUF root is handed to agents this way)."""
        root = await self.root()
        signature = self._signer_for(root).sign(statement)
        return SignedDocument(
            document=statement.decode(), signer=root.key_id, signature=b64encode(signature)
        )

    async def root_signing(self) -> tuple[bytes, Callable[[bytes], bytes]]:
        """The current root's public key and its raw signing function, for signatures
        in other formats than ours (the installer's SSH signature)."""
        root = await self.root()
        return root.public_key, self._signer_for(root).sign

    def _insert(
        self,
        tx: Transaction,
        signer: FileSigner,
        purpose: str,
        now: datetime,
        certified_by: str | None = None,
        certification: bytes | None = None,
    ) -> None:
        keys_store.insert_key(
            tx.conn,
            key_id=signer.key_id,
            purpose=purpose,
            public_key=signer.public_key,
            signer="file",
            private_key=signer.seal(self.kek),
            not_before=iso(now),
            not_after=None,
            created_at=iso(now),
            certified_by=certified_by,
            certification=certification,
        )

    def _publish(self, tx: Transaction, root: Signer, now: datetime) -> int:
        """Sign and store the next key-set version from the keys as they are now."""
        rows = [KeyRecord.from_row(r) for r in keys_store.all_keys(tx.conn)]
        signing = [r for r in rows if r.purpose == "signing"]
        version = keys_store.latest_key_set_version(tx.conn) + 1
        key_set = KeySet(
            version=version,
            root_key_id=root.key_id,
            issued_at=unix(now),
            keys=tuple(
                r.published()
                for r in signing
                if r.revoked_at is None and (r.not_after is None or r.not_after > now)
            ),
            revoked=tuple(r.key_id for r in signing if r.revoked_at is not None),
        )
        document = canonical_json(key_set.to_json()).decode()
        keys_store.insert_key_set(
            tx.conn,
            version=version,
            document=document,
            signature=root.sign(document.encode()),
            root_key_id=root.key_id,
            created_at=iso(now),
        )
        return version

    def _forget_cached(self) -> None:
        self._bundle = None
        self._records = None
        self._version = None

    async def status(self) -> dict[str, Any]:
        now = self.clock()
        records = await self.records()
        return {
            "key_set_version": await self.key_set_version(),
            "root_fingerprint": await self.root_fingerprint(),
            "keys": [
                {
                    "key_id": r.key_id,
                    "purpose": r.purpose,
                    "state": _state(r, now),
                    "not_before": iso(r.not_before),
                    "not_after": iso(r.not_after) if r.not_after else None,
                    "signer": r.signer,
                }
                for r in records
            ],
        }


def _state(record: KeyRecord, now: datetime) -> str:
    if record.revoked_at:
        return "revoked"
    if record.not_after and record.not_after < now:
        return "expired"
    if record.retired_at:
        return "retiring" if record.purpose == "signing" else "retired"
    return "active"


__all__ = ["KeyFileError", "KeyOperationRefused", "KeyService", "UnknownKey"]


async def open_key_service(
    db: Database, key_file: Path, *, initialise: bool, clock: Clock = utc_now
) -> KeyService:
    """Load the key file and check it opens the stored keys. With `initialise`, a fresh
    appliance gets its key file, root key, signing key and key set 1."""
    has_keys = await db.read(keys_store.latest_key_set_version) > 0
    if key_file.exists():
        kek = KeyEncryptionKey.load(key_file)
    elif has_keys:
        raise KeyFileError(
            f"the database holds signing keys but the key file {key_file} is missing; "
            "restore it from your key-file backup (see docs/key-rotation.md)"
        )
    elif initialise:
        kek = KeyEncryptionKey.create(key_file)
        log_event(logger, logging.INFO, "keys.key_file_created", path=str(key_file))
    else:
        raise KeyFileError(f"no key file at {key_file}; start the appliance once to create it")
    service = KeyService(db, kek, clock)
    if initialise:
        await service.ensure_initialised()
    elif has_keys:
        await service.check_key_file()
    return service
