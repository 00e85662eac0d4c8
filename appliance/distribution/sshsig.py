"""OpenSSH signatures (the SSHSIG format of OpenSSH's PROTOCOL.sshsig) made with the
appliance's Ed25519 root key, so that the one-line installer can check the install
manifest with `ssh-keygen -Y verify` (OpenSSH 8.1+) on hosts whose OpenSSL cannot
verify Ed25519 from the command line (OpenSSL 1.1.1 has no `pkeyutl -rawin`: Debian 11).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable

NAMESPACE = "redflag-install"
_MAGIC = b"SSHSIG"
_HASH = "sha512"


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def public_key_blob(public_key: bytes) -> bytes:
    return _string(b"ssh-ed25519") + _string(public_key)


def signature(
    message: bytes,
    public_key: bytes,
    sign: Callable[[bytes], bytes],
    namespace: str = NAMESPACE,
) -> str:
    """The armored SSH signature of `message` by the Ed25519 key `public_key`, whose
    raw signing function is `sign`."""
    digest = hashlib.sha512(message).digest()
    fields = _string(namespace.encode()) + _string(b"") + _string(_HASH.encode())
    raw = sign(_MAGIC + fields + _string(digest))
    blob = (
        _MAGIC
        + struct.pack(">I", 1)
        + _string(public_key_blob(public_key))
        + fields
        + _string(_string(b"ssh-ed25519") + _string(raw))
    )
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


def allowed_signers_line(public_key: bytes, principal: str = "redflag") -> str:
    """The `ssh-keygen -Y verify -f FILE` line that trusts `public_key` for NAMESPACE."""
    key = base64.b64encode(public_key_blob(public_key)).decode()
    return f'{principal} namespaces="{NAMESPACE}" ssh-ed25519 {key}\n'
