"""`redflag-agent register`: verify the appliance against the token, then enrol.

Order matters: the root key is checked against the token's fingerprint, and this host's
clock against the appliance's, BEFORE the agent sends anything but a GET; nothing is
saved unless registration succeeded (a key generated for an attempt that was refused is
thrown away). Each refusal is an exception of its own, so that `register` can name the
cause (agent/register_failures.py).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from agent import state
from agent.client import ApplianceClient, ApplianceError
from agent.trust import TrustState, establish
from kernel.logs import log_event
from kernel.protocol import (
    CLOCK_WINDOW_S,
    HostFacts,
    RegistrationRequest,
    b64encode,
    parse_registration_token,
)
from kernel.tags import clean_tags

logger = logging.getLogger("redflag.agent.enrol")

PENDING_KEY = "agent.key.pending"


class RegistrationRefused(RuntimeError):
    """The appliance (or this agent, before asking it) refused the registration for a
    reason the message names."""


class ClockSkewed(RegistrationRefused):
    """This host's clock is further from the appliance's than the appliance accepts;
    `skew_s` is positive when this host is ahead."""

    def __init__(self, skew_s: int):
        side = "ahead of" if skew_s > 0 else "behind"
        super().__init__(
            f"this host's clock is {abs(skew_s)} s {side} the appliance's (the appliance "
            f"accepts {CLOCK_WINDOW_S} s either way)"
        )
        self.skew_s = skew_s


class TokenRefused(RegistrationRefused):
    """The token is not (or no longer) good: `reason` is unknown, malformed, expired or
    revoked, as the appliance said."""

    def __init__(self, reason: str):
        super().__init__(f"registration token refused: {reason}")
        self.reason = reason


class SeatsUsedUp(RegistrationRefused):
    """Every seat of the token is taken."""


class HostTagsRefused(RegistrationRefused):
    """The token gives hosts its own tags only, and this host asked for some."""


@dataclass(frozen=True)
class Identity:
    agent_id: str
    server: str

    @classmethod
    def load(cls, state_dir: Path) -> Identity | None:
        raw = state.read_json(state_dir, state.IDENTITY_FILE)
        return cls(raw["agent_id"], raw["server"]) if raw else None


def register(
    state_dir: Path,
    server: str,
    token: str,
    facts: HostFacts,
    *,
    tags: Sequence[str] = (),
    transport: Any = None,
    clock: Callable[[], float] | None = None,
) -> tuple[Identity, bool, list[str]]:
    """Returns (identity, created, the agent's tags). `tags`: tags this host asks for
    besides the token's. Raises ProtocolError, InvalidTagText, an HTTPFailure, TrustError,
    RegistrationRefused or ApplianceError; the state dir is then as it was."""
    _, token_fingerprint = parse_registration_token(token)
    host_tags = clean_tags(list(tags))
    options = {"transport": transport} | ({"clock": clock} if clock else {})
    with ApplianceClient(server, **options) as client:
        sent = client.clock()
        bundle = client.get("/trust")
        answered = (sent + client.clock()) / 2
        trust = establish(bundle, token_fingerprint)  # the wrong appliance: nothing else
        _check_clock(client, answered)
        key, pending = _key_for_attempt(state_dir)
        request = RegistrationRequest(
            token=token.strip(),
            public_key=b64encode(bytes(key.verify_key)),
            facts=facts,
            timestamp=int(client.clock()),
            tags=host_tags,
        )
        signed = RegistrationRequest(
            **{**vars(request), "proof": b64encode(key.sign(request.signed_part()).signature)}
        )
        try:
            answer = client.post("/agents/register", signed.to_json())
        except ApplianceError as refusal:
            if pending:
                (state_dir / PENDING_KEY).unlink(missing_ok=True)
            raise _named(refusal) from refusal
        except Exception:
            if pending:
                (state_dir / PENDING_KEY).unlink(missing_ok=True)
            raise
    identity = Identity(str(answer["agent_id"]), client.server)
    previous = Identity.load(state_dir)
    if previous and previous.agent_id == identity.agent_id:
        old = state.read_json(state_dir, state.TRUST_FILE)
        if old:  # same identity again: never lower the accepted sequence
            trust = TrustState(**{**vars(trust), "last_seq": int(old.get("last_seq", 0))})
    if pending:
        (state_dir / PENDING_KEY).replace(state_dir / state.KEY_FILE)
    state.write_json(state_dir, state.TRUST_FILE, trust.to_json())
    state.write_json(state_dir, state.IDENTITY_FILE, vars(identity))  # written last
    _adopt_release_root(state_dir, identity.server, trust, options)
    given = answer.get("tags")
    return identity, bool(answer.get("created")), list(given) if isinstance(given, list) else []


def _adopt_release_root(
    state_dir: Path, server: str, trust: TrustState, options: dict[str, Any]
) -> None:
    """Take the appliance's release trust root now (self-update checks releases
    against it); a failure costs nothing: the daemon tries again at start and on
    each offer."""
    from agent.releases import ReleaseCheckFailed, Releases  # python-tuf: only here

    try:
        with ApplianceClient(server, **options) as client:
            Releases(state_dir, server).adopt_root(client.get("/releases/bootstrap"), trust)
    except (ReleaseCheckFailed, ApplianceError, OSError, ValueError) as exc:
        log_event(logger, logging.WARNING, "agent.release_root_not_adopted", str(exc)[:300])


def _check_clock(client: ApplianceClient, local_now: float) -> None:
    """The appliance refuses a registration (and every signed request) whose timestamp
    is more than CLOCK_WINDOW_S from its clock: compare with the Date header of its last
    answer first, so that the refusal can say by how much. `local_now`: this host's time
    when the appliance answered (the middle of the request). No Date header (a proxy
    that drops it): the appliance's own refusal gives the skew instead."""
    from email.utils import parsedate_to_datetime  # the email package: not for the daemon

    date = client.last_headers.get("Date")
    try:
        stamped = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        stamped = None
    if stamped is None:
        return
    # Date has whole seconds, cut off: the appliance's time was half a second later on
    # average.
    skew = round(local_now - (stamped + 0.5))
    if abs(skew) > CLOCK_WINDOW_S:
        raise ClockSkewed(skew)


def _named(refusal: ApplianceError) -> Exception:
    """The appliance's answer as the refusal it names (the API's `errors[0]`), or
    as it came."""
    reason = refusal.about("token")
    if reason == "used up":
        return SeatsUsedUp("every seat of the registration token is taken")
    if reason == "host tags not allowed":
        return HostTagsRefused("this registration token gives hosts its own tags only")
    if reason in ("unknown", "malformed", "expired", "revoked"):
        return TokenRefused(reason)
    skew = _SKEW.match(refusal.about("timestamp") or "")
    if skew:
        return ClockSkewed(int(skew[1]) * (1 if skew[2] == "ahead of" else -1))
    return refusal


# How the appliance states a skew it refuses (appliance/services/enrolment.py).
_SKEW = re.compile(r"(\d+) s (ahead of|behind) the appliance's clock")


def _key_for_attempt(state_dir: Path) -> tuple[SigningKey, bool]:
    """The existing identity key, or a pending one kept only if registration works.
    A pending key left by a crash is reused, so a retry is still the same agent."""
    if (state_dir / state.KEY_FILE).exists():
        return state.load_or_create_key(state_dir), False
    pending = state_dir / PENDING_KEY
    if pending.exists():
        return SigningKey(base64.b64decode(pending.read_text().strip())), True
    key = SigningKey.generate()
    state.write_atomically(pending, base64.b64encode(bytes(key)) + b"\n")
    return key, True
