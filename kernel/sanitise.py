"""Make untrusted text safe to log and display: strip terminal escapes and control
characters, escape line breaks (or, for tool output, keep them as the lines a terminal
shows), cap the size and redact secrets. Shared by the agent and the appliance, so it
depends on the standard library only."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from itertools import islice
from typing import NamedTuple

REDACTED = "[REDACTED]"
FIELD_KEY_MAX_CHARS = 64
# Blanket bounds for log fields and for payloads without a declared shape; a payload
# with one (kernel/protocol.py PAYLOAD_SHAPES) is bounded by that shape instead.
MAX_DEPTH = 4
MAX_ITEMS = 50  # per dict or list
MAX_VALUES = 200  # per sanitise_fields call, across all nesting levels

# In every pattern below, each repeat is followed by something it cannot match (or
# ends the pattern), so a greedy repeat that backs off finds no other match: the
# scans stay linear without possessive repeats (`*+`), which Python 3.9 lacks.

# ECMA-48 sequences, 7-bit (ESC ...) and 8-bit (C1) forms. String sequences (OSC, DCS,
# SOS, PM, APC) run to BEL or ST; an unterminated one loses only its introducer.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]"
)


def _neutralising_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {code: None for code in range(0x20)}
    table.update({code: None for code in range(0x7F, 0xA0)})
    table.update({ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
    # Line/paragraph separators and bidi overrides stay visible but inert.
    for code in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    # Lone surrogates cannot be encoded as UTF-8 by a log stream or a web page.
    table.update({code: "\ufffd" for code in range(0xD800, 0xE000)})
    return table


_NEUTRALISE = _neutralising_table()
# Tool output keeps its line structure: line feeds stay, carriage returns and tabs are
# rendered the way a terminal shows them (see `sanitise_output`).
_NEUTRALISE_OUTPUT = {
    code: mapped for code, mapped in _NEUTRALISE.items() if code not in (9, 10, 13)
}
TAB_WIDTH = 8
# Cleaning shrinks text (escapes go) or grows it (U+202E becomes six characters), so
# only this many times max_chars is examined: enough to fill the output, bounded cost.
_WINDOW_FACTOR = 4
_WINDOW_SLACK = 256


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _neutralise(text: str, max_chars: int) -> tuple[str, int]:
    """Clean a bounded prefix of `text`; return it with the count of characters unseen."""
    window = text[: max_chars * _WINDOW_FACTOR + _WINDOW_SLACK]
    clean = _ESCAPE_SEQUENCE.sub("", window).translate(_NEUTRALISE)
    return clean, len(text) - len(window)


def _cap(clean: str, unseen: int, max_chars: int) -> str:
    if unseen == 0 and len(clean) <= max_chars:
        return clean
    return f"{clean[:max_chars]}…[+{max(0, len(clean) - max_chars) + unseen} chars]"


def sanitise_text(value: object, max_chars: int = 2048) -> str:
    """Return `value` as one line of printable text of at most `max_chars` characters,
    plus a `…[+N chars]` marker when cut. Only a bounded prefix is ever examined."""
    max_chars = max(0, max_chars)
    return _cap(*_neutralise(_as_text(value), max_chars), max_chars)


def sanitise_output(value: object, max_chars: int = 16_000) -> str:
    """Tool output (install logs and other multi-line text) as a terminal finally shows
    it, safe to store and display: real line breaks; a line rewritten by carriage
    returns (progress counters) as it reads at the end, later text over earlier text
    from the start of the line; tabs as spaces; escapes and every other control
    character removed as in `sanitise_text`. At most `max_chars` characters plus a
    `…[+N chars]` marker when cut; only a bounded prefix is ever examined."""
    max_chars = max(0, max_chars)
    return _cap(*_terminal_lines(_as_text(value), max_chars), max_chars)


def _sanitise_output_and_redact(value: object, max_chars: int) -> str:
    max_chars = max(0, max_chars)
    clean, unseen = _terminal_lines(_as_text(value), max_chars)
    return _cap(redact_secrets(clean), unseen, max_chars)


def _terminal_lines(text: str, max_chars: int) -> tuple[str, int]:
    """Clean a bounded prefix of `text` into lines; return it with the count unseen."""
    window = text[: max_chars * _WINDOW_FACTOR + _WINDOW_SLACK]
    clean = _ESCAPE_SEQUENCE.sub("", window).translate(_NEUTRALISE_OUTPUT)
    return "\n".join(_last_state(line) for line in clean.split("\n")), len(text) - len(window)


def _last_state(line: str) -> str:
    """What is left on screen of one line after its carriage returns. Each one sends
    the cursor back to column 0, so a later part covers the start of what came before;
    the parts are read last to first, which keeps the cost linear."""
    shown = ""
    for part in reversed(line.split("\r")):
        part = part.expandtabs(TAB_WIDTH) if "\t" in part else part
        if len(part) > len(shown):
            shown += part[len(shown) :]
    return shown


def sanitise_and_redact(value: object, max_chars: int = 2048) -> str:
    """Like `redact_secrets(sanitise_text(value))`, but redacts before cutting, so a
    secret that straddles the cut is not half kept."""
    max_chars = max(0, max_chars)
    clean, unseen = _neutralise(_as_text(value), max_chars)
    return _cap(redact_secrets(clean), unseen, max_chars)


_SENSITIVE_WORD = (
    r"password|passwd|pwd|secret|token|api[_-]?key|passphrase|authorization|cookie"
    r"|private[_-]?key"
)
_SENSITIVE_KEY = re.compile(_SENSITIVE_WORD, re.IGNORECASE)
# The id of a secret (`token_id`, `api_token_ids`, `tokenId`) names which one, and is
# no secret itself: the audit log must show which token registered an agent.
_IDENTIFIER_SUFFIX = r"(?:[_.-](?i:ids?)|(?<=[a-z])(?:Ids?|IDs?))"
_IDENTIFIER_KEY = re.compile(rf"{_IDENTIFIER_SUFFIX}$")
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",  # unterminated: to the end
    re.DOTALL,
)
# `Cookie: a=1; b=2` carries several secrets; redact the whole header value.
_COOKIE_HEADER = re.compile(
    r"(?<![\w.-])((?:set-)?cookie\s*:\s*)(?:[^\\\"'\r\n]|\\(?!(?-i:[rn])))*", re.IGNORECASE
)
# A key containing a sensitive word, a separator, then a quoted or bare value. The
# lookahead is tried once per word, so the scan stays linear.
_KEY_VALUE = re.compile(
    rf"(?<![\w.-])(?=[\w.-]*?(?:{_SENSITIVE_WORD}))(?![\w.-]*?(?-i:{_IDENTIFIER_SUFFIX})"
    r"(?![\w.-]))[\w.-]+"
    r"(?P<sep>(?:\\?[\"'])?\s*[:=]\s*)"
    r"(?P<value>\\\"(?:[^\\]|\\(?!\"))*(?:\\\")?"
    r"|\"(?:[^\"\\]|\\.)*\"?"
    r"|'(?:[^'\\]|\\.)*'?"
    r"|(?:(?:bearer|basic|token|digest)\s+)?[^\s,;&\"'{}\[\]]+)",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(bearer|basic)(\s+)[A-Za-z0-9._~+/-]+=*", re.IGNORECASE)
_URL_PASSWORD = re.compile(
    r"((?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s/:@]*):[^\s/@]*@", re.IGNORECASE
)
_REDFLAG_TOKEN = re.compile(r"(?<![A-Za-z0-9])(rf_[a-z]+_)[A-Za-z0-9_-]{20,}")
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Rules that meet at one spot leave `[REDACTED][REDACTED]`; one is enough, and
# collapsing them keeps redaction idempotent.
_REPEATED_REDACTION = re.compile(r"(?:\[REDACTED\]){2,}")


def _redact_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = next((q for q in ('\\"', '"', "'") if value.startswith(q)), "")
    return f"{match[0][: match.start('value') - match.start()]}{quote}{REDACTED}{quote}"


def redact_secrets(text: str) -> str:
    """Replace passwords, tokens, keys and URL credentials in `text` with [REDACTED].
    Hex digests and UUIDs are left alone. Run it on capped text (see
    `sanitise_and_redact`): the patterns are linear but not free."""
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    text = _COOKIE_HEADER.sub(rf"\1{REDACTED}", text)
    text = _KEY_VALUE.sub(_redact_value, text)
    text = _AUTH_SCHEME.sub(rf"\1\2{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    text = _REDFLAG_TOKEN.sub(rf"\1{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _REPEATED_REDACTION.sub(REDACTED, text)


def is_sensitive_key(name: str) -> bool:
    """Whether a field called `name` holds a secret (password, token, cookie, ...)."""
    return _SENSITIVE_KEY.search(name) is not None and not _IDENTIFIER_KEY.search(name)


def sanitise_fields(
    fields: Mapping[str, object], max_chars: int = 2048, *, line_breaks: bool = False
) -> dict[str, object]:
    """Return a JSON-serialisable copy of `fields`: keys cleaned and capped, secrets
    redacted, strings sanitised, nesting and item counts bounded. Strings are single
    lines (for logs), or with `line_breaks` kept as `sanitise_output` keeps them (for
    stored records whose text may be tool output)."""
    budget = [MAX_VALUES]
    text = _sanitise_output_and_redact if line_breaks else sanitise_and_redact
    return _sanitise_mapping(fields, _Limits(max_chars, text), MAX_DEPTH, budget)


class _Limits(NamedTuple):
    max_chars: int
    text: Callable[[object, int], str]


def _sanitise_mapping(
    fields: Mapping[object, object], limits: _Limits, depth: int, budget: list[int]
) -> dict[str, object]:
    clean: dict[str, object] = {}
    for key, value in islice(fields.items(), MAX_ITEMS):
        name = sanitise_text(key, FIELD_KEY_MAX_CHARS)
        if is_sensitive_key(name):
            clean[name] = REDACTED
        else:
            clean[name] = _sanitise_value(value, limits, depth, budget)
    if len(fields) > MAX_ITEMS:
        clean["…"] = f"[+{len(fields) - MAX_ITEMS} items]"
    return clean


def _sanitise_value(value: object, limits: _Limits, depth: int, budget: list[int]) -> object:
    if budget[0] <= 0:
        return "[too many values]"
    budget[0] -= 1
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):  # huge ints cannot even be turned into text
        return value if value.bit_length() <= 64 else sanitise_text(value, limits.max_chars)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        if depth <= 1:
            return "[nested too deep]"
        if isinstance(value, Mapping):
            return _sanitise_mapping(value, limits, depth - 1, budget)
        items = [_sanitise_value(v, limits, depth - 1, budget) for v in islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"…[+{len(value) - MAX_ITEMS} items]")
        return items
    return limits.text(value, limits.max_chars)


__all__ = [
    "REDACTED",
    "is_sensitive_key",
    "redact_secrets",
    "sanitise_and_redact",
    "sanitise_fields",
    "sanitise_output",
    "sanitise_text",
]
