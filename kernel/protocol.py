"""The wire format between agent and appliance, defined once.

Canonical JSON, Ed25519 signatures, signed agent requests, the signed key set, root
certificates and signed command envelopes. The appliance imports this module; the
agent never imports the appliance.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kernel.sanitise import sanitise_fields, sanitise_text
from kernel.tags import InvalidTagText, clean_tags

PROTOCOL_VERSION = 1
CLOCK_WINDOW_S = 300  # how far an agent's clock may be from the appliance's
MAX_COMMAND_LIFETIME_S = 48 * 3600  # from issue to expiry; agents refuse longer ones

HEADER_AGENT = "X-RedFlag-Agent"
HEADER_TIMESTAMP = "X-RedFlag-Timestamp"
HEADER_NONCE = "X-RedFlag-Nonce"
HEADER_SIGNATURE = "X-RedFlag-Signature"

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_AGENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KEY_ID = re.compile(r"^[a-z2-7]{16}$")
_TOKEN = re.compile(r"^rf_reg_(?P<secret>[A-Za-z0-9_-]{32,64})\.(?P<fingerprint>[a-z2-7]{32})$")


class ProtocolError(ValueError):
    """A record does not follow the protocol; the message says which field and why."""


# What reading a value of the wrong kind raises: a missing key, int() of a list or of
# "x", and int() of infinity (json.loads accepts Infinity).
_UNREADABLE = (KeyError, TypeError, ValueError, OverflowError)


class SignatureInvalid(ProtocolError):
    """A signature does not verify with the key it claims."""


def canonical_json(value: Any) -> bytes:
    """The exact bytes that get signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64decode(text: str, what: str = "value") -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ProtocolError(f"{what}: not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ProtocolError(f"{what}: not base64url") from exc


def fingerprint(public_key: bytes) -> str:
    """32 base32 characters (160 bits) of SHA-256: what a token carries for the root."""
    digest = hashlib.sha256(b"redflag-key:" + public_key).digest()[:20]
    return base64.b32encode(digest).decode().lower()


def key_id(public_key: bytes) -> str:
    return fingerprint(public_key)[:16]


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise SignatureInvalid("signature does not verify") from exc


def parse_registration_token(token: str) -> tuple[str, str]:
    """(secret, root fingerprint) from `rf_reg_<secret>.<fingerprint>`."""
    match = _TOKEN.match(token.strip()) if isinstance(token, str) else None
    if not match:
        raise ProtocolError(
            "registration token: expected rf_reg_<secret>.<fingerprint>, as printed by "
            "'redflag-appliance token create'"
        )
    return match["secret"], match["fingerprint"]


def check_agent_id(value: object) -> str:
    if not isinstance(value, str) or not _AGENT_ID.match(value):
        raise ProtocolError("agent id: not a lowercase UUID")
    return value


# --- signed agent requests -------------------------------------------------------


def request_signing_message(
    method: str, path: str, timestamp: int, nonce: str, body: bytes, agent_id: str
) -> bytes:
    body_digest = hashlib.sha256(body).hexdigest()
    return "\n".join(
        ["RF-REQUEST-1", method.upper(), path, str(timestamp), nonce, body_digest, agent_id]
    ).encode()


@dataclass(frozen=True)
class RequestSignature:
    agent_id: str
    timestamp: int
    nonce: str
    signature: bytes

    @classmethod
    def from_headers(cls, headers: Any) -> RequestSignature:
        missing = [
            h
            for h in (HEADER_AGENT, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
            if not headers.get(h)
        ]
        if missing:
            raise ProtocolError(f"unsigned request: missing {', '.join(missing)}")
        agent_id = check_agent_id(headers[HEADER_AGENT])
        try:
            timestamp = int(headers[HEADER_TIMESTAMP])
        except ValueError:
            raise ProtocolError(f"{HEADER_TIMESTAMP}: not an integer") from None
        nonce = headers[HEADER_NONCE]
        if not _NONCE.match(nonce):
            raise ProtocolError(f"{HEADER_NONCE}: 16-64 base64url characters")
        signature = b64decode(headers[HEADER_SIGNATURE], HEADER_SIGNATURE)
        return cls(agent_id, timestamp, nonce, signature)

    def headers(self) -> dict[str, str]:
        return {
            HEADER_AGENT: self.agent_id,
            HEADER_TIMESTAMP: str(self.timestamp),
            HEADER_NONCE: self.nonce,
            HEADER_SIGNATURE: b64encode(self.signature),
        }


# --- the key hierarchy -----------------------------------------------------------


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    public_key: str  # base64url
    not_before: int  # unix seconds
    not_after: int | None

    def raw_public_key(self) -> bytes:
        return b64decode(self.public_key, f"key {self.key_id}")

    def valid_at(self, moment: int) -> bool:
        return self.not_before <= moment and (self.not_after is None or moment <= self.not_after)


@dataclass(frozen=True)
class KeySet:
    """The command-signing keys currently valid, certified by the root key."""

    version: int
    root_key_id: str
    issued_at: int
    keys: tuple[PublishedKey, ...]
    revoked: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "root_key_id": self.root_key_id,
            "issued_at": self.issued_at,
            "keys": [asdict(k) for k in self.keys],
            "revoked": list(self.revoked),
        }

    @classmethod
    def from_json(cls, value: Any) -> KeySet:
        if not isinstance(value, dict):
            raise ProtocolError("key set: not an object")
        try:
            keys = tuple(
                PublishedKey(
                    key_id=_key_id(k["key_id"]),
                    public_key=str(k["public_key"]),
                    not_before=int(k["not_before"]),
                    not_after=None if k.get("not_after") is None else int(k["not_after"]),
                )
                for k in value["keys"]
            )
            key_set = cls(
                version=int(value["version"]),
                root_key_id=_key_id(value["root_key_id"]),
                issued_at=int(value["issued_at"]),
                keys=keys,
                revoked=tuple(_key_id(k) for k in value.get("revoked", [])),
            )
        except _UNREADABLE as exc:
            raise ProtocolError(f"key set: malformed ({exc})") from exc
        if key_set.version < 1:
            raise ProtocolError("key set: version must be positive")
        return key_set

    def key(self, wanted: str) -> PublishedKey | None:
        return next((k for k in self.keys if k.key_id == wanted), None)


def _key_id(value: object) -> str:
    if not isinstance(value, str) or not _KEY_ID.match(value):
        raise ProtocolError(f"key id {value!r}: 16 base32 characters expected")
    return value


@dataclass(frozen=True)
class SignedDocument:
    """Canonical JSON text plus a signature over exactly those bytes."""

    document: str
    signer: str
    signature: str  # base64url

    def to_json(self) -> dict[str, str]:
        return {"document": self.document, "signer": self.signer, "signature": self.signature}

    @classmethod
    def from_json(cls, value: Any, what: str) -> SignedDocument:
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) for k in ("document", "signer", "signature")
        ):
            raise ProtocolError(f"{what}: expected document, signer and signature strings")
        return cls(value["document"], _key_id(value["signer"]), value["signature"])

    def verified_payload(self, public_key: bytes) -> Any:
        verify_signature(public_key, self.document.encode(), b64decode(self.signature))
        try:
            return json.loads(self.document)
        except ValueError as exc:
            raise ProtocolError("signed document: not JSON") from exc


@dataclass(frozen=True)
class RootCertificate:
    """A new root key, signed by the root it replaces."""

    key_id: str
    public_key: str
    previous_key_id: str
    issued_at: int

    @classmethod
    def from_json(cls, value: Any) -> RootCertificate:
        try:
            return cls(
                key_id=_key_id(value["key_id"]),
                public_key=str(value["public_key"]),
                previous_key_id=_key_id(value["previous_key_id"]),
                issued_at=int(value["issued_at"]),
            )
        except _UNREADABLE as exc:
            raise ProtocolError(f"root certificate: malformed ({exc})") from exc

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- commands --------------------------------------------------------------------

_COMMAND_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Command:
    """What an agent is asked to do; travels only inside a signed envelope."""

    command_id: int
    agent_id: str
    seq: int
    kind: str
    issued_at: int
    expires_at: int
    key_id: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Command:
        try:
            command = cls(
                command_id=int(value["command_id"]),
                agent_id=check_agent_id(value["agent_id"]),
                seq=int(value["seq"]),
                kind=str(value["kind"]),
                issued_at=int(value["issued_at"]),
                expires_at=int(value["expires_at"]),
                key_id=_key_id(value["key_id"]),
                params=dict(value.get("params") or {}),
            )
        except _UNREADABLE as exc:
            raise ProtocolError(f"command: malformed ({exc})") from exc
        if not _COMMAND_KIND.match(command.kind):
            raise ProtocolError("command: kind must be lowercase letters, digits, _")
        if command.seq < 1:
            raise ProtocolError("command: seq must be positive")
        return command


# --- registration and check-in ---------------------------------------------------

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_FACT_LIMIT = 200


def _fact(value: Any, name: str, limit: int = _FACT_LIMIT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise ProtocolError(f"{name}: printable text of at most {limit} characters")
    return value


@dataclass(frozen=True)
class HostFacts:
    """What an agent says about its host at registration and on check-in."""

    hostname: str
    machine_fingerprint: str
    os_family: str = ""
    os_name: str = ""
    os_version: str = ""
    kernel: str = ""
    arch: str = ""
    agent_version: str = ""

    @classmethod
    def from_json(cls, value: Any) -> HostFacts:
        if not isinstance(value, dict):
            raise ProtocolError("host facts: not an object")
        hostname = value.get("hostname")
        if not isinstance(hostname, str) or not _HOSTNAME.match(hostname):
            raise ProtocolError("hostname: letters, digits, '.', '_' and '-', at most 253")
        fingerprint_ = _fact(value.get("machine_fingerprint"), "machine_fingerprint", 128)
        return cls(
            hostname=hostname,
            machine_fingerprint=fingerprint_,
            **{
                k: _fact(value.get(k), k)
                for k in ("os_family", "os_name", "os_version", "kernel", "arch", "agent_version")
            },
        )

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class RegistrationRequest:
    """Signed with the new agent key (`proof`), so the appliance knows the agent holds
    the private key of the public key it registers."""

    token: str
    public_key: str
    facts: HostFacts
    timestamp: int
    proof: str = ""
    # Tags the host asks for (`register --tag`), besides those its token gives. Sent, and
    # signed, only when there are any: the same bytes as before for agents without tags.
    tags: tuple[str, ...] = ()

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "token": self.token,
            "public_key": self.public_key,
            "facts": self.facts.to_json(),
            "timestamp": self.timestamp,
        }
        if self.tags:
            fields["tags"] = list(self.tags)
        return fields

    def signed_part(self) -> bytes:
        return canonical_json(self._fields())

    def to_json(self) -> dict[str, Any]:
        return {**self._fields(), "proof": self.proof}

    @classmethod
    def from_json(cls, value: Any) -> RegistrationRequest:
        if not isinstance(value, dict):
            raise ProtocolError("registration: not an object")
        try:
            request = cls(
                token=str(value["token"]),
                public_key=str(value["public_key"]),
                facts=HostFacts.from_json(value["facts"]),
                timestamp=int(value["timestamp"]),
                proof=str(value["proof"]),
                tags=_registration_tags(value.get("tags", [])),
            )
        except _UNREADABLE as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"registration: malformed ({exc})") from exc
        if len(b64decode(request.public_key, "public_key")) != 32:
            raise ProtocolError("public_key: an Ed25519 public key is 32 bytes")
        return request

    def verify_proof(self) -> None:
        verify_signature(
            b64decode(self.public_key), self.signed_part(), b64decode(self.proof, "proof")
        )


def _registration_tags(value: Any) -> tuple[str, ...]:
    """Tags exactly as the agent cleaned them (kernel/tags.py): the proof signs them."""
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ProtocolError("tags: a list of strings")
    try:
        cleaned = clean_tags(value)
    except InvalidTagText as exc:
        raise ProtocolError(f"tags: {exc}") from None
    if list(cleaned) != value:
        raise ProtocolError("tags: lower case, sorted, each once")
    return cleaned


_BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class CheckinReport:
    machine_fingerprint: str
    key_set_version: int
    agent_version: str = ""
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    reboot_required: bool | None = None
    boot_time: str = ""
    # How long the agent is willing to wait for a command (a held check-in): the
    # appliance answers early when one is created, else after at most this long.
    hold_s: int = 0

    @classmethod
    def from_json(cls, value: Any) -> CheckinReport:
        if not isinstance(value, dict):
            raise ProtocolError("check-in: not an object")
        try:
            version = int(value.get("key_set_version", 0))
        except _UNREADABLE:
            raise ProtocolError("key_set_version: an integer") from None
        return cls(
            machine_fingerprint=_fact(value.get("machine_fingerprint"), "machine_fingerprint", 128),
            key_set_version=version,
            agent_version=_fact(value.get("agent_version"), "agent_version"),
            breakers=_breakers(value.get("breakers")),
            reboot_required=_optional_bool(value.get("reboot_required"), "reboot_required"),
            boot_time=_fact(value.get("boot_time"), "boot_time", 40),
            hold_s=_hold_seconds(value.get("hold_s")),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckinAnswer:
    """The appliance's answer to a check-in: when to come back, and what is new."""

    poll_interval_s: int
    key_set_version: int
    # The trust bundle, only for an agent behind the current key set (agent/trust.py
    # verifies it).
    trust: dict[str, Any] | None
    # Command envelopes (SignedDocument JSON). Each is checked on its own by the agent
    # (agent/trust.py verify_command), so that a bad one is refused and reported while
    # the others run; here they only have to be objects.
    commands: list[dict[str, str]]
    # The longest check-in hold this appliance grants (0: it does not hold them).
    hold_max_s: int = 0
    # A release to switch to (self-update, docs/releases.md): {"target_path", "version"},
    # or None. Agents from before self-update ignore it. It does not end a held
    # check-in: an agent that cannot take it would otherwise never be held.
    update: dict[str, str] | None = None

    def is_empty(self) -> bool:
        """Nothing for the agent: a check-in that may be held."""
        return not self.commands and self.trust is None

    def to_json(self) -> dict[str, Any]:
        answer = {
            "poll_interval_s": self.poll_interval_s,
            "key_set_version": self.key_set_version,
            "trust": self.trust,
            "commands": self.commands,
            "hold_max_s": self.hold_max_s,
        }
        return answer if self.update is None else {**answer, "update": self.update}

    @classmethod
    def from_json(cls, value: Any) -> CheckinAnswer:
        if not isinstance(value, dict):
            raise ProtocolError("check-in answer: not an object")
        poll = value.get("poll_interval_s")
        if not _is_whole(poll) or poll < 1:
            raise ProtocolError("poll_interval_s: a positive whole number of seconds")
        version = value.get("key_set_version")
        if not _is_whole(version) or version < 0:
            raise ProtocolError("key_set_version: a whole number")
        trust = value.get("trust")
        if trust is not None and not isinstance(trust, dict):
            raise ProtocolError("trust: a trust bundle object or null")
        commands = value.get("commands")
        if commands is None:
            commands = []
        if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
            raise ProtocolError("commands: a list of command envelopes")
        hold_max = value.get("hold_max_s")  # missing from appliances that do not hold
        if hold_max is None:
            hold_max = 0
        if not _is_whole(hold_max) or hold_max < 0:
            raise ProtocolError("hold_max_s: a whole number of seconds")
        return cls(poll, version, trust, commands, hold_max, _update_offer(value.get("update")))


def _update_offer(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("update: an object with target_path and version, or null")
    target_path = value.get("target_path")
    if not isinstance(target_path, str) or not _TARGET_PATH.match(target_path):
        raise ProtocolError("update.target_path: a release's path in the repository")
    return {"target_path": target_path, "version": check_version(value.get("version"))}


_TARGET_PATH = re.compile(r"^agent/[a-z0-9-]{1,32}/[a-z0-9_-]{1,32}/[A-Za-z0-9._+-]{1,200}$")


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_HOLD_S = 300


def _hold_seconds(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HOLD_S:
        raise ProtocolError(f"hold_s: whole seconds from 0 to {MAX_HOLD_S}")
    return value


def _optional_bool(value: Any, name: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(f"{name}: true, false or null")
    return value


def _breakers(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise ProtocolError("breakers: an object of at most 50 entries")
    breakers = {}
    for name, snapshot in value.items():
        if not isinstance(snapshot, dict) or snapshot.get("state") not in _BREAKER_STATES:
            raise ProtocolError(f"breakers.{name}: state is one of {', '.join(_BREAKER_STATES)}")
        try:
            failures = int(snapshot.get("consecutive_failures") or 0)
        except _UNREADABLE:
            raise ProtocolError(f"breakers.{name}: consecutive_failures is a number") from None
        breakers[_fact(name, "breaker name", 64)] = {
            "state": snapshot["state"],
            "consecutive_failures": failures,
            "last_error": sanitise_text(snapshot.get("last_error") or "", 500),
        }
    return breakers


# --- declared payload shapes ---------------------------------------------------------
#
# What a payload holds, field by field, and how big each field may be. A record that
# fits arrives whole, however deep it nests; a value of the wrong kind or over its bound
# is refused with its path (our agent never sends one); a field the shape does not name
# is left out unread, so an unknown one costs nothing and a newer agent is not refused.


class Shape:
    def clean(self, value: Any, where: str) -> Any:
        """`value` checked against this shape: its text sanitised, undeclared fields
        left out. Raises ProtocolError naming `where` when it does not fit."""
        raise NotImplementedError


class Text(Shape):
    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def clean(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > self.max_chars:
            raise ProtocolError(f"{where}: text of at most {self.max_chars} characters")
        return sanitise_text(value, self.max_chars)


class Number(Shape):
    def clean(self, value: Any, where: str) -> int | float | None:
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, int) and value.bit_length() > 64)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise ProtocolError(f"{where}: a number")
        return value


class Flag(Shape):
    def clean(self, value: Any, where: str) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise ProtocolError(f"{where}: true, false or null")
        return value


class ListOf(Shape):
    def __init__(self, item: Shape, max_items: int):
        self.item = item
        self.max_items = max_items

    def clean(self, value: Any, where: str) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > self.max_items:
            raise ProtocolError(f"{where}: a list of at most {self.max_items}")
        return [self.item.clean(item, f"{where}[{index}]") for index, item in enumerate(value)]


class Record(Shape):
    def __init__(self, **fields: Shape):
        self.fields = fields

    def clean(self, value: Any, where: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: an object")
        return {
            name: shape.clean(value[name], f"{where}.{name}")
            for name, shape in self.fields.items()
            if name in value
        }


# The bounds are those the agent keeps to (agent/sysinfo.py, agent/smart.py,
# agent/scanners/reboot.py); tests check that its largest records fit.
SYSTEM_TEXT_MAX = 200
SYSTEM_DISKS_MAX = 64
SYSTEM_INTERFACES_MAX = 32
SYSTEM_ADDRESSES_MAX = 16
SMART_DISKS_MAX = 64
SMART_TEXT_MAX = 120
SMART_NOTE_MAX = 300
SMART_REASONS_MAX = 10
REBOOT_PACKAGES_MAX = 100
REBOOT_REASON_MAX = 300
_MOMENT = Text(40)  # ISO-8601 time
_SYSTEM_TEXT = Text(SYSTEM_TEXT_MAX)
_SMART_TEXT = Text(SMART_TEXT_MAX)

SYSTEM_INFO = Record(
    hostname=_SYSTEM_TEXT,
    os=Record(name=_SYSTEM_TEXT, version=_SYSTEM_TEXT, family=_SYSTEM_TEXT, arch=_SYSTEM_TEXT),
    kernel=_SYSTEM_TEXT,
    cpu=Record(model=_SYSTEM_TEXT, cores=Number(), logical=Number()),
    memory=Record(total_bytes=Number(), available_bytes=Number()),
    disks=ListOf(
        Record(
            mountpoint=_SYSTEM_TEXT,
            device=_SYSTEM_TEXT,
            fstype=_SYSTEM_TEXT,
            total_bytes=Number(),
            used_bytes=Number(),
            free_bytes=Number(),
            percent=Number(),
        ),
        SYSTEM_DISKS_MAX,
    ),
    boot_time=_MOMENT,
    uptime_s=Number(),
    interfaces=ListOf(
        Record(
            name=_SYSTEM_TEXT,
            addresses=ListOf(
                Record(family=_SYSTEM_TEXT, address=_SYSTEM_TEXT), SYSTEM_ADDRESSES_MAX
            ),
        ),
        SYSTEM_INTERFACES_MAX,
    ),
    agent_version=_SYSTEM_TEXT,
    collected_at=_MOMENT,
)
SMART_DISK = Record(
    device=_SMART_TEXT,
    type=_SMART_TEXT,
    protocol=_SMART_TEXT,
    model=_SMART_TEXT,
    serial=_SMART_TEXT,
    capacity_bytes=Number(),
    health=_SMART_TEXT,
    assessment=_SMART_TEXT,
    prefail=Flag(),
    temperature_c=Number(),
    power_on_hours=Number(),
    reallocated_sectors=Number(),
    pending_sectors=Number(),
    uncorrectable_sectors=Number(),
    critical_warning=Number(),
    media_errors=Number(),
    percentage_used=Number(),
    failed_attributes=ListOf(
        Record(id=Number(), name=_SMART_TEXT, when_failed=_SMART_TEXT, prefailure=Flag()),
        SMART_REASONS_MAX,
    ),
    reasons=ListOf(Text(SMART_NOTE_MAX), SMART_REASONS_MAX),
    note=Text(SMART_NOTE_MAX),
)
REBOOT_STATE = Record(
    required=Flag(),
    reason=Text(REBOOT_REASON_MAX),
    packages=ListOf(Text(128), REBOOT_PACKAGES_MAX),
    boot_time=_MOMENT,
    method=Text(40),
)
# The `system.info` event (agent/host_report.py): the host, its disks' SMART health and
# its reboot state.
SYSTEM_INFO_EVENT = Record(
    system=SYSTEM_INFO,
    disks=ListOf(SMART_DISK, SMART_DISKS_MAX),
    reboot=REBOOT_STATE,
)
PAYLOAD_SHAPES: dict[str, Record] = {"system.info": SYSTEM_INFO_EVENT}


# --- events ------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EVENT_KINDS = (
    "command.ack",
    "command.output",
    "disk.failing",
    "command.result",
    "command.rejected",
    "scan.report",
    "scanner.failed",
    "system.info",
    "log",
    "agent.update_failed",
)
COMMAND_RESULT_STATES = ("succeeded", "failed")
MAX_UPDATES_PER_REPORT = 5000


@dataclass(frozen=True)
class Event:
    """One thing an agent reports. `from_json` validates it; the payload of a kind
    with a declared shape (PAYLOAD_SHAPES) comes back cleaned to that shape."""

    uuid: str
    kind: str
    occurred_at: int
    payload: dict[str, Any]
    # A scan.report's payload as typed records: validated once, here, and passed on.
    scan_report: ScanReport | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "payload": copy.deepcopy(self.payload),
        }

    @classmethod
    def from_json(cls, value: Any) -> Event:
        if not isinstance(value, dict):
            raise ProtocolError("event: not an object")
        uuid = value.get("uuid")
        if not isinstance(uuid, str) or not _UUID.match(uuid):
            raise ProtocolError("uuid: a lowercase UUID")
        kind = value.get("kind")
        if kind not in EVENT_KINDS:
            raise ProtocolError(f"kind: one of {', '.join(EVENT_KINDS)}")
        payload = value.get("payload")
        if not isinstance(payload, dict):
            raise ProtocolError("payload: an object")
        try:
            occurred_at = int(value["occurred_at"])
        except _UNREADABLE:
            raise ProtocolError("occurred_at: unix seconds") from None
        shape = PAYLOAD_SHAPES.get(kind)
        if shape is not None:
            payload = shape.clean(payload, kind)
        # Every record valid, or the event is refused.
        scan_report = ScanReport.from_json(payload) if kind == "scan.report" else None
        event = cls(uuid, kind, occurred_at, payload, scan_report)
        if kind == "command.ack" and not isinstance(payload.get("command_id"), int):
            raise ProtocolError("command.ack: command_id must be an integer")
        if kind == "command.result":
            if not isinstance(payload.get("command_id"), int):
                raise ProtocolError("command.result: command_id must be an integer")
            if payload.get("status") not in COMMAND_RESULT_STATES:
                raise ProtocolError("command.result: status is succeeded or failed")
        if kind == "agent.update_failed":
            check_version(payload.get("version"), "agent.update_failed: version")
            if not isinstance(payload.get("reason"), str):
                raise ProtocolError("agent.update_failed: reason must be text")
        if kind == "command.rejected" and not isinstance(payload.get("reason"), str):
            raise ProtocolError("command.rejected: reason must be text")
        if kind == "command.output" and not (
            isinstance(payload.get("command_id"), int)
            and isinstance(payload.get("chunk_no"), int)
            and isinstance(payload.get("text"), str)
        ):
            raise ProtocolError("command.output: command_id, chunk_no and text")
        return event


def payload_to_keep(event: Event) -> dict[str, Any]:
    """What the appliance stores of an event's payload: a declared shape's payload as
    `from_json` cleaned it; any other with its text sanitised (line breaks kept, as in
    tool output) and its nesting and size held to blanket bounds."""
    if event.kind in PAYLOAD_SHAPES:
        return event.payload
    return sanitise_fields(event.payload, max_chars=65_536, line_breaks=True)


@dataclass(frozen=True)
class ScanReport:
    """The payload of a `scan.report` event: what one scan of one source found, every
    record validated (read once, on arrival). `unchecked` names packages the scanner
    could not check (e.g. their registry was down): they keep their state."""

    source: str
    updates: list[UpdateRecord]
    unchecked: list[str]

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ScanReport:
        """A compromised scanner or a forged report with a hostile name or version is
        refused whole, with the reason."""
        source = payload.get("source")
        updates = payload.get("updates")
        if not isinstance(updates, list) or len(updates) > MAX_UPDATES_PER_REPORT:
            raise ProtocolError(
                f"scan.report: updates must be a list of at most {MAX_UPDATES_PER_REPORT}"
            )
        unchecked = payload.get("unchecked", [])
        if not isinstance(unchecked, list) or len(unchecked) > MAX_UPDATES_PER_REPORT:
            raise ProtocolError("scan.report: unchecked must be a list of package names")
        for name in unchecked:
            check_package_name(str(source), name)
        records = []
        read = UpdateRecord._read
        listed: set[tuple[str, str]] = set()
        for index, raw in enumerate(updates):
            try:
                if not isinstance(raw, dict):
                    raise ProtocolError("update: not an object")
                record = read(raw, source)
                # One row per package and architecture: a second would contradict the
                # first (and must not reach the store as a conflict, a 500 forever).
                if (record.package, record.arch) in listed:
                    raise ProtocolError(f"{record.package} ({record.arch or 'no arch'}) twice")
                listed.add((record.package, record.arch))
                records.append(record)
            except ProtocolError as exc:
                raise ProtocolError(f"scan.report update #{index}: {exc}") from None
        if not isinstance(source, str):  # only an empty report gets this far without one
            raise ProtocolError("scan.report: source must be text")
        return cls(source, records, [str(name) for name in unchecked])


def scan_report_updates(payload: dict[str, Any]) -> list[UpdateRecord]:
    """The updates of a scan report's payload, each validated (ScanReport)."""
    return ScanReport.from_json(payload).updates


# --- updates -----------------------------------------------------------------------

SOURCES = ("apt", "dnf", "yum", "docker", "winget", "windows_update")
SEVERITIES = ("critical", "important", "moderate", "low", "unknown")
# What each package manager allows in a name. Nothing may start with '-' (it would be
# read as an option) and nothing may walk paths ('..'). Names and versions are data:
# they reach tools only as separate arguments, never through a shell.
_PACKAGE_NAMES = {
    "apt": re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}$"),
    "dnf": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"),
    "yum": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"),
    # repository[:tag], the registry host may carry a port: "registry.lan:5000/app:1.2"
    "docker": re.compile(
        r"[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    ),
    "winget": re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$"),
    "windows_update": re.compile(r"^(?:KB[0-9]{6,8}|[0-9a-fA-F-]{36})$"),
}
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~:_@^-]{0,199}")  # '^': Fedora snapshots
_ADVISORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
_ADVISORIES_ERROR = "advisories: a list of advisory/CVE ids"
_ARCH = re.compile(r"[A-Za-z0-9_-]{1,32}")


_CUSTOM_SOURCE = re.compile(r"custom\.[a-z0-9_-]{1,32}")
_CUSTOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def is_known_source(source: object) -> bool:
    """The built-in sources, and `custom.NAME` for an admin's own scanner."""
    return source in SOURCES or (
        isinstance(source, str) and _CUSTOM_SOURCE.fullmatch(source) is not None
    )


def check_package_name(source: str, name: object) -> str:
    rule = _PACKAGE_NAMES.get(source) or (_CUSTOM_NAME if is_known_source(source) else None)
    if rule is None:
        raise ProtocolError(f"source: one of {', '.join(SOURCES)} or custom.NAME")
    # fullmatch: `$` would also accept a trailing newline.
    if not isinstance(name, str) or not rule.fullmatch(name) or ".." in name:
        raise ProtocolError(f"package name {str(name)[:80]!r} is not a valid {source} name")
    return name


def check_version(value: object, what: str = "version", *, empty_ok: bool = False) -> str:
    if empty_ok and value in (None, ""):
        return ""
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise ProtocolError(f"{what} {str(value)[:80]!r} is not a valid version")
    return value


# Not frozen: a scan report brings thousands, and a frozen dataclass's __init__ costs
# about eight times a plain one's (one object.__setattr__ per field). Nothing changes a
# record after it was read.
@dataclass
class UpdateRecord:
    """One pending update as a scanner reports it; validated on both sides."""

    source: str
    package: str
    available_version: str
    current_version: str = ""
    arch: str = ""
    origin: str = ""
    severity: str = "unknown"
    security: bool = False
    advisories: tuple[str, ...] = ()
    size_bytes: int | None = None
    reboot_required: bool = False
    held: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["advisories"] = list(self.advisories)
        return record

    @classmethod
    def from_json(cls, value: Any) -> UpdateRecord:
        if not isinstance(value, dict):
            raise ProtocolError("update: not an object")
        return cls._read(value, value.get("source"))

    @classmethod
    def _read(cls, value: dict[str, Any], source: Any) -> UpdateRecord:
        """`value` (an object) as a record of `source`. A scan report reads thousands at
        once (ScanReport), so this avoids what costs without checking anything less."""
        if not is_known_source(source):
            raise ProtocolError(f"source: one of {', '.join(SOURCES)} or custom.NAME")
        get = value.get
        severity = get("severity", "unknown")
        if severity not in SEVERITIES:
            raise ProtocolError(f"severity: one of {', '.join(SEVERITIES)}")
        advisories = get("advisories") or []
        if not isinstance(advisories, list) or len(advisories) > 200:
            raise ProtocolError(_ADVISORIES_ERROR)
        for advisory in advisories:
            if not isinstance(advisory, str) or not _ADVISORY.fullmatch(advisory):
                raise ProtocolError(_ADVISORIES_ERROR)
        size = get("size_bytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ProtocolError("size_bytes: a whole number of bytes")
        details = get("details") or {}
        if not isinstance(details, dict):
            raise ProtocolError("details: an object")
        arch = get("arch") or ""
        if arch and not _ARCH.fullmatch(str(arch)):
            raise ProtocolError("arch: letters, digits, '_' and '-'")
        return cls(
            source,
            check_package_name(source, get("package")),
            check_version(get("available_version"), "available version"),
            check_version(get("current_version"), "current version", empty_ok=True),
            str(arch),
            _fact(get("origin"), "origin"),
            severity,
            bool(get("security", False)),
            tuple(advisories),
            size,
            bool(get("reboot_required", False)),
            bool(get("held", False)),
            details,
        )
