"""What the agent trusts: a pinned root key, the key set it certified, and the last
command sequence number accepted. Nothing here trusts on first use: the first root is
checked against the fingerprint in the registration token."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from kernel.protocol import (
    CLOCK_WINDOW_S,
    MAX_COMMAND_LIFETIME_S,
    Command,
    KeySet,
    ProtocolError,
    RootCertificate,
    SignatureInvalid,
    SignedDocument,
    b64decode,
    b64encode,
    fingerprint,
    key_id,
)


class TrustError(RuntimeError):
    """The appliance's keys could not be verified; the message says why."""


class FingerprintMismatch(TrustError):
    """First contact: the appliance's root key is not the one the token names."""


class CommandRejected(Exception):
    """An envelope the agent refuses; reported to the appliance with `reason`."""

    def __init__(
        self, reason: str, detail: str, command_id: int | None = None, signature_valid: bool = False
    ):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.command_id = command_id
        self.signature_valid = signature_valid


@dataclass(frozen=True)
class TrustState:
    root_key_id: str
    root_public_key: str
    key_set: dict[str, str]  # the SignedDocument as received
    key_set_version: int
    last_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TrustState:
        try:
            return cls(**value)
        except TypeError as exc:
            raise TrustError(f"trust state unreadable: {exc}") from exc

    def current_key_set(self) -> KeySet:
        return KeySet.from_json(json.loads(self.key_set["document"]))


def _walk_roots(bundle: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Every root from the first, each certified by the one before: [(key_id, key)]."""
    try:
        first = bundle["root"]
        first_key = b64decode(first["public_key"], "root public key")
        chain = [(key_id(first_key), first_key)]
        for raw in bundle.get("root_chain") or []:
            signed = SignedDocument.from_json(raw, "root certificate")
            previous_id, previous_key = chain[-1]
            if signed.signer != previous_id:
                raise TrustError(
                    f"root certificate signed by {signed.signer}, expected {previous_id}"
                )
            certificate = RootCertificate.from_json(signed.verified_payload(previous_key))
            new_key = b64decode(certificate.public_key, "root public key")
            if key_id(new_key) != certificate.key_id or certificate.previous_key_id != previous_id:
                raise TrustError("root certificate does not describe the key it carries")
            chain.append((certificate.key_id, new_key))
    except (KeyError, TypeError) as exc:
        raise TrustError(f"trust bundle malformed: {exc}") from exc
    except SignatureInvalid:
        raise TrustError("a root certificate's signature does not verify") from None
    except ProtocolError as exc:
        raise TrustError(f"trust bundle malformed: {exc}") from exc
    return chain


def _verified_key_set(bundle: dict[str, Any], root_id: str, root_key: bytes) -> KeySet:
    try:
        signed = SignedDocument.from_json(bundle["key_set"], "key set")
        if signed.signer != root_id:
            raise TrustError(f"key set signed by {signed.signer}, not the current root {root_id}")
        key_set = KeySet.from_json(signed.verified_payload(root_key))
    except SignatureInvalid:
        raise TrustError("the key set's signature does not verify") from None
    except (KeyError, ProtocolError) as exc:
        raise TrustError(f"key set malformed: {exc}") from exc
    if key_set.root_key_id != root_id:
        raise TrustError("the key set names another root than the one that signed it")
    return key_set


def establish(bundle: dict[str, Any], token_fingerprint: str) -> TrustState:
    """First contact: trust only a root whose fingerprint the token carries, and the
    roots it certified after it."""
    chain = _walk_roots(bundle)
    start = next(
        (i for i, (_, key) in enumerate(chain) if fingerprint(key) == token_fingerprint), None
    )
    if start is None:
        raise FingerprintMismatch(
            "the appliance's root key does not match the fingerprint in the registration "
            "token: this is not the appliance the token came from (or someone is in "
            "between). Nothing was saved"
        )
    root_id, root_key = chain[-1]
    key_set = _verified_key_set(bundle, root_id, root_key)
    return TrustState(root_id, b64encode(root_key), dict(bundle["key_set"]), key_set.version)


def update(state: TrustState, bundle: dict[str, Any]) -> TrustState:
    """A newer key set (and maybe new roots) from a check-in. Lower versions are
    refused: nobody can roll an agent back to a key set with a revoked key in it."""
    chain = _walk_roots(bundle)
    ids = [kid for kid, _ in chain]
    if state.root_key_id not in ids:
        raise TrustError("the offered root chain does not include the root this agent trusts")
    root_id, root_key = chain[-1]
    key_set = _verified_key_set(bundle, root_id, root_key)
    if key_set.version < state.key_set_version:
        raise TrustError(
            f"key set version {key_set.version} is older than the held "
            f"version {state.key_set_version}; refused"
        )
    if key_set.version == state.key_set_version:
        if bundle["key_set"]["document"] != state.key_set["document"]:
            raise TrustError(f"two different key sets claim version {key_set.version}")
        return state
    return TrustState(
        root_id, b64encode(root_key), dict(bundle["key_set"]), key_set.version, state.last_seq
    )


def verify_command(state: TrustState, envelope: Any, agent_id: str, now: int) -> Command:
    """Check an envelope completely; the caller persists `last_seq` before running it."""
    try:
        signed = SignedDocument.from_json(envelope, "command envelope")
        claimed = json.loads(signed.document)
        claimed_id = claimed.get("command_id") if isinstance(claimed, dict) else None
    except (ProtocolError, ValueError) as exc:
        raise CommandRejected("malformed", str(exc)) from None
    claimed_id = claimed_id if isinstance(claimed_id, int) else None
    key_set = state.current_key_set()
    if signed.signer in key_set.revoked:
        raise CommandRejected("revoked_key", f"signed with revoked key {signed.signer}", claimed_id)
    published = key_set.key(signed.signer)
    if published is None:
        raise CommandRejected(
            "unknown_key", f"key {signed.signer} is not in key set {key_set.version}", claimed_id
        )
    try:
        command = Command.from_json(signed.verified_payload(published.raw_public_key()))
    except SignatureInvalid:
        raise CommandRejected("bad_signature", "signature does not verify", claimed_id) from None
    except ProtocolError as exc:
        raise CommandRejected("malformed", str(exc), claimed_id) from None

    def reject(reason: str, detail: str) -> CommandRejected:
        return CommandRejected(reason, detail, command.command_id, signature_valid=True)

    if command.key_id != signed.signer:
        raise reject("malformed", "the command names another key than its signer")
    if command.agent_id != agent_id:
        raise reject("wrong_target", f"addressed to agent {command.agent_id}")
    if now > command.expires_at:
        raise reject("expired", f"expired {now - command.expires_at}s ago")
    # issued_at is the signer's word: bound it, so that a retired key cannot sign a
    # backdated command that lives on long after the key's validity ended.
    if command.issued_at > now + CLOCK_WINDOW_S:
        raise reject("malformed", "issued in the future")
    if command.expires_at - command.issued_at > MAX_COMMAND_LIFETIME_S:
        raise reject("malformed", f"lives longer than {MAX_COMMAND_LIFETIME_S}s")
    if not published.valid_at(command.issued_at):
        raise reject("unknown_key", f"key {signed.signer} was not valid when it was used")
    if command.seq <= state.last_seq:
        raise reject("old_sequence", f"sequence {command.seq} is not above {state.last_seq}")
    return command
