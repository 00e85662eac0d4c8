"""Untrusted text becomes one safe, bounded line, and secrets never reach a log."""

import hashlib
import math
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.sanitise import (
    REDACTED,
    is_sensitive_key,
    redact_secrets,
    sanitise_and_redact,
    sanitise_fields,
    sanitise_text,
)

# No example database: the property tests leave nothing behind in the checkout.
no_database = settings(database=None)

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SUFFIX_ROOM = len("…[+9999999 chars]")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\x1b[31mred\x1b[0m text", "red text"),
        ("\x1b[1;38;5;196mbold\x1b[m", "bold"),
        ("\x1b[2J\x1b[H\x1b[10;20Hmoved\x1b[?25l\x1b[1A", "moved"),
        ("\x9b31mred via 8-bit CSI", "red via 8-bit CSI"),
        ("\x1bcreset\x1b7saved\x1b8 \x1b(Bcharset", "resetsaved charset"),
    ],
)
def test_ansi_escapes_are_removed(raw, expected):
    assert sanitise_text(raw) == expected


def test_osc_title_set_is_removed_with_either_terminator():
    assert sanitise_text("\x1b]0;pwned title\x07after") == "after"
    assert sanitise_text("\x1b]2;pwned title\x1b\\after") == "after"


def test_osc_8_hyperlink_keeps_only_its_visible_text():
    link = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
    assert sanitise_text(link) == "click me"


def test_line_breaks_and_tabs_are_escaped_so_a_record_cannot_forge_another():
    forged = 'ok\r\n{"level":"info","msg":"admin logged in"}\tend'
    clean = sanitise_text(forged)
    assert clean == 'ok\\r\\n{"level":"info","msg":"admin logged in"}\\tend'
    assert len(clean.splitlines()) == 1


def test_nul_and_other_control_characters_are_dropped():
    assert sanitise_text("a\x00b\x07c\x08d\x7fe\x85f\x9cg") == "abcdefg"


def test_bidi_overrides_and_unicode_line_separators_are_neutralised():
    clean = sanitise_text("file\u202egpj.exe \u2066x\u2069 one\u2028two\u2029")
    assert UNSAFE.search(clean) is None
    assert clean == "file\\u202egpj.exe \\u2066x\\u2069 one\\u2028two\\u2029"


def test_lone_surrogates_become_replacement_characters():
    assert sanitise_text("a\ud800b") == "a\ufffdb"


def test_a_one_megabyte_string_is_capped():
    clean = sanitise_text("A" * 1_000_000)
    assert clean == "A" * 2048 + f"…[+{1_000_000 - 2048} chars]"


def test_a_one_megabyte_string_of_escapes_and_newlines_is_capped():
    clean = sanitise_text("\x1b[31m\n" * 200_000, max_chars=100)
    assert clean.startswith("\\n" * 50 + "…[+")
    assert len(clean) <= 100 + SUFFIX_ROOM


def test_non_string_values_are_turned_into_text():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

        def __repr__(self):
            raise RuntimeError("no")

    assert sanitise_text(42) == "42"
    assert sanitise_text(b"\x1b[31m") == "b'\\x1b[31m'"
    assert sanitise_text(Unprintable()) == "<unprintable Unprintable>"


SECRETS = [
    ("Authorization: Bearer abc.DEF-123_456", "abc.DEF-123_456"),
    ("retrying with bearer c2VjcmV0LXRva2Vu", "c2VjcmV0LXRva2Vu"),
    ("BASIC dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("login password=hunter2 user=bob", "hunter2"),
    ("db_passwd: hunter2", "hunter2"),
    ("PWD=hunter2", "hunter2"),
    ('{"client_secret": "s3cr3t value", "user": "bob"}', "s3cr3t value"),
    ("{'api_key': 'k-123-456'}", "k-123-456"),
    ('{\\"token\\": \\"abc123\\"}', "abc123"),
    ("GET /checkin?apikey=zz99zz&page=2", "zz99zz"),
    ("X-Api-Key: abcdef123", "abcdef123"),
    ("passphrase = correct-horse", "correct-horse"),
    ('"private_key": "MC4CAQAwBQYDK2VwBCIEI"', "MC4CAQAwBQYDK2VwBCIEI"),
    ("Cookie: session=abc123; csrf=def456", "def456"),
    ("agent used rf_reg_AbCdEfGhIjKlMnOpQrSt_-12 twice", "AbCdEfGhIjKlMnOpQrSt_-12"),
    ("rf_api_0123456789abcdefghijKLMN", "0123456789abcdefghijKLMN"),
    ("session rf_ses_zzzzzzzzzzzzzzzzzzzzzzzz", "zzzzzzzzzzzzzzzzzzzzzzzz"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7",
    ),
    ("key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk", "b3BlbnNzaC1rZXk"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl done", "c2lnbmF0dXJl"),
    ("mirror https://alice:s3cr3t@mirror.example/debian", "s3cr3t"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_secrets_are_redacted(text, secret):
    clean = sanitise_and_redact(text)
    assert secret not in clean
    assert REDACTED in clean


def test_url_credentials_keep_the_user_name():
    clean = redact_secrets("postgres://alice:s3cr3t@db.example:5432/redflag")
    assert clean == f"postgres://alice:{REDACTED}@db.example:5432/redflag"


def test_redflag_tokens_keep_their_kind():
    assert redact_secrets("rf_reg_" + "x" * 32) == f"rf_reg_{REDACTED}"


def test_redaction_keeps_the_quotes_of_json_values():
    assert redact_secrets('{"password": "x"}') == f'{{"password": "{REDACTED}"}}'


def test_digests_uuids_and_ordinary_urls_survive_redaction():
    digest = hashlib.sha256(b"0003_add_commands.sql").hexdigest()
    text = (
        f"migration 0003 checksum={digest} image sha256:{digest} "
        f"agent={uuid.uuid4()} at http://appliance.lan:8080/api/v1 rf_short_token"
    )
    assert redact_secrets(text) == text


def test_a_secret_straddling_the_cap_is_redacted_whole():
    clean = sanitise_and_redact("x" * 20 + " rf_api_" + "s" * 40, max_chars=30)
    assert "s" not in clean.split("…")[0]


@pytest.mark.parametrize(
    "name", ["password", "DB_PASSWORD", "apiKey", "x-api-key", "Set-Cookie", "privateKey"]
)
def test_sensitive_keys_are_recognised(name):
    assert is_sensitive_key(name)


@pytest.mark.parametrize("name", ["agent_id", "checksum", "path", "user", "hostname"])
def test_ordinary_keys_are_not_sensitive(name):
    assert not is_sensitive_key(name)


@pytest.mark.parametrize(
    "name", ["token_id", "api_token_id", "token_ids", "tokenId", "secret.id", "password-id"]
)
def test_the_id_of_a_secret_is_not_a_secret(name):
    assert not is_sensitive_key(name)


@pytest.mark.parametrize("name", ["id_token", "tokenid", "token_identity", "token_idx"])
def test_a_name_that_only_looks_like_an_id_stays_sensitive(name):
    assert is_sensitive_key(name)


def test_ids_of_secrets_pass_in_text_but_the_secrets_do_not():
    text = "agent registered with token_id=42 and api_token_id: 7, tokenId=9"
    assert redact_secrets(text) == text
    assert redact_secrets("token_id=42 token=abc123") == f"token_id=42 token={REDACTED}"
    assert redact_secrets('{"id_token": "abc"}') == f'{{"id_token": "{REDACTED}"}}'
    assert redact_secrets("tokenid=abc123") == f"tokenid={REDACTED}"


def test_sanitise_fields_keeps_the_id_of_a_token_and_redacts_the_token():
    clean = sanitise_fields({"token_id": 42, "token": "abc", "note": "rf_reg_" + "x" * 30})
    assert clean == {"token_id": 42, "token": REDACTED, "note": f"rf_reg_{REDACTED}"}
    # An id field holding a real token is still caught by the token's own shape.
    assert sanitise_fields({"token_id": "rf_reg_" + "y" * 30}) == {"token_id": f"rf_reg_{REDACTED}"}


def test_sanitise_fields_redacts_sensitive_keys_and_keeps_numbers():
    clean = sanitise_fields(
        {"password": "hunter2", "count": 3, "ratio": 0.5, "ok": True, "none": None}
    )
    assert clean == {"password": REDACTED, "count": 3, "ratio": 0.5, "ok": True, "none": None}


def test_sanitise_fields_cleans_strings_keys_and_nested_values():
    clean = sanitise_fields(
        {
            "note\n": "a\x1b[31mb\nc Bearer abcdef",
            "nested": {"token": "t", "items": ["x\ny", 1, {"secret": "s"}]},
        }
    )
    assert clean == {
        "note\\n": f"ab\\nc Bearer {REDACTED}",
        "nested": {"token": REDACTED, "items": ["x\\ny", 1, {"secret": REDACTED}]},
    }


def test_sanitise_fields_bounds_depth_items_and_key_length():
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(10):
        deep = {"down": deep}
    clean = sanitise_fields({"deep": deep, "many": list(range(1000)), "k" * 500: 1})
    assert "[nested too deep]" in repr(clean["deep"])
    assert len(clean["many"]) < 100
    assert clean["many"][-1].startswith("…[+")
    assert all(len(key) < 100 for key in clean)


def test_sanitise_fields_output_is_json_friendly():
    clean = sanitise_fields({"nan": math.nan, "inf": math.inf, "big": 10**5000, "obj": object()})
    assert clean["nan"] == "nan"
    assert clean["inf"] == "inf"
    assert isinstance(clean["big"], str)
    assert isinstance(clean["obj"], str)


@no_database
@given(st.text(), st.integers(min_value=0, max_value=300))
def test_any_text_becomes_one_short_line_without_control_characters(text, max_chars):
    clean = sanitise_text(text, max_chars)
    assert UNSAFE.search(clean) is None
    assert "\x1b" not in clean
    assert "\n" not in clean
    assert len(clean) <= max_chars + SUFFIX_ROOM


@no_database
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=2048))
def test_safe_ascii_text_is_left_unchanged(text):
    assert sanitise_text(text) == text
    assert sanitise_text(sanitise_text(text)) == text


@no_database
@given(st.text(max_size=300))
def test_sanitising_twice_changes_nothing_more(text):
    once = sanitise_text(text)
    assert sanitise_text(once) == once


FRAGMENTS = st.sampled_from(
    ["password", "=", ": ", '"', "'", "\\", "Bearer ", "rf_api_", "eyJ", ".", "://", "@", " "]
)


@no_database
@given(st.lists(FRAGMENTS | st.text(max_size=5), max_size=30).map("".join))
def test_redacting_twice_changes_nothing_more(text):
    once = redact_secrets(text)
    assert redact_secrets(once) == once
