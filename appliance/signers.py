"""Private keys at rest and the signers that use them.

Private keys live in the database, each sealed with a libsodium secretbox under the
key-encryption key (KEK): 32 random bytes in a key file OUTSIDE the data dir
(default /etc/redflag/master.key, mode 0600). A key file rather than a passphrase,
because the appliance must restart unattended; see docs/security.md.

`Signer` is the seam for hardware: a PKCS#11 or cloud-KMS signer only has to
implement `sign`; the database then holds a reference (`signer_ref`) instead of a
sealed key. Only the file signer ships today.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from kernel.protocol import key_id

_SEALED_PREFIX = b"rfk1"


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable or does not open the stored keys."""


class Signer(Protocol):
    key_id: str
    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeyEncryptionKey:
    path: Path
    key: bytes

    @classmethod
    def load(cls, path: Path) -> KeyEncryptionKey:
        try:
            text = path.read_text(encoding="ascii").strip()
            key = base64.b64decode(text, validate=True)
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"key file {path} is unreadable: {exc}") from exc
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise KeyFileError(f"key file {path} does not hold a 32-byte key")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        return cls(path, key)

    @classmethod
    def create(cls, path: Path) -> KeyEncryptionKey:
        """Write a new random key, refusing to overwrite an existing file."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls(path, key)

    def seal(self, secret: bytes) -> bytes:
        return _SEALED_PREFIX + bytes(nacl.secret.SecretBox(self.key).encrypt(secret))

    def unseal(self, sealed: bytes) -> bytes:
        if not sealed.startswith(_SEALED_PREFIX):
            raise KeyFileError("stored key is not in a known sealed format")
        try:
            return nacl.secret.SecretBox(self.key).decrypt(sealed[len(_SEALED_PREFIX) :])
        except CryptoError:
            raise KeyFileError(
                f"the key file {self.path} does not open the stored signing keys: it is "
                "not the key file this database was created with. Restore the right one"
            ) from None


class FileSigner:
    """An Ed25519 key unsealed into memory from the database."""

    def __init__(self, signing_key: SigningKey):
        self._signing_key = signing_key
        self.public_key = bytes(signing_key.verify_key)
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> FileSigner:
        return cls(SigningKey.generate())

    @classmethod
    def unseal(cls, kek: KeyEncryptionKey, sealed: bytes) -> FileSigner:
        return cls(SigningKey(kek.unseal(sealed)))

    def seal(self, kek: KeyEncryptionKey) -> bytes:
        return kek.seal(bytes(self._signing_key))

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"FileSigner(key_id={self.key_id!r})"
