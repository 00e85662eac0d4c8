"""The check-in in both directions, as agents in the field and the appliance read it:
the JSON keys stay what they are, and what does not fit is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.protocol import CheckinAnswer, CheckinReport, ProtocolError

ANSWER = {
    "poll_interval_s": 300,
    "key_set_version": 2,
    "trust": None,
    "commands": [{"document": "{}", "signer": "a" * 16, "signature": "c2ln"}],
    "hold_max_s": 25,
}


def test_the_check_in_answer_keeps_the_keys_agents_in_the_field_read() -> None:
    answer = CheckinAnswer(300, 2, None, ANSWER["commands"], hold_max_s=25)
    assert answer.to_json() == ANSWER


def test_an_answer_from_an_appliance_that_does_not_hold_check_ins_reads_as_no_hold() -> None:
    older = {k: v for k, v in ANSWER.items() if k != "hold_max_s"}
    assert CheckinAnswer.from_json(older).hold_max_s == 0


def test_an_offered_release_comes_and_goes_as_update_and_a_bad_one_is_refused() -> None:
    offer = {
        "target_path": "agent/stable/linux-x86_64/redflag-agent-1.2.0.tar.gz",
        "version": "1.2.0",
    }
    assert CheckinAnswer.from_json({**ANSWER, "update": offer}).update == offer
    assert CheckinAnswer.from_json(ANSWER).update is None
    assert CheckinAnswer(300, 2, None, [], update=offer).to_json()["update"] == offer
    for wrong in ("1.2.0", {"version": "1.2.0"}, {**offer, "target_path": "/etc/passwd"}):
        with pytest.raises(ProtocolError, match="update"):
            CheckinAnswer.from_json({**ANSWER, "update": wrong})


def test_only_an_answer_without_commands_or_trust_may_be_held() -> None:
    assert CheckinAnswer(300, 2, None, []).is_empty()
    assert not CheckinAnswer(300, 2, {"root": {}}, []).is_empty()
    assert not CheckinAnswer.from_json(ANSWER).is_empty()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("poll_interval_s", "300", "poll_interval_s"),
        ("poll_interval_s", 0, "poll_interval_s"),
        ("poll_interval_s", True, "poll_interval_s"),
        ("key_set_version", None, "key_set_version"),
        ("trust", ["root"], "trust"),
        ("commands", {"document": "{}"}, "commands"),
        ("commands", ["an envelope"], "commands"),
        ("hold_max_s", -1, "hold_max_s"),
        ("hold_max_s", 2.5, "hold_max_s"),
    ],
)
def test_an_answer_with_a_field_of_the_wrong_kind_is_refused_by_name(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        CheckinAnswer.from_json({**ANSWER, field: value})


def test_a_malformed_envelope_is_left_to_the_agent_to_refuse_and_report() -> None:
    # verify_command turns it into a "malformed" rejection the appliance hears of;
    # refusing the whole answer would hide it and hold back the good commands.
    odd = {**ANSWER, "commands": [{"signer": 5}, *ANSWER["commands"]]}
    assert CheckinAnswer.from_json(odd).commands == odd["commands"]


def test_the_check_in_report_keeps_the_keys_the_appliance_reads() -> None:
    report = CheckinReport(
        machine_fingerprint="fp",
        key_set_version=3,
        agent_version="0.1.0",
        breakers={"apt": {"state": "closed", "consecutive_failures": 0, "last_error": ""}},
        reboot_required=True,
        boot_time="2026-12-03T09:21:25Z",
        hold_s=25,
    )
    assert report.to_json() == {
        "machine_fingerprint": "fp",
        "key_set_version": 3,
        "agent_version": "0.1.0",
        "breakers": {"apt": {"state": "closed", "consecutive_failures": 0, "last_error": ""}},
        "reboot_required": True,
        "boot_time": "2026-12-03T09:21:25Z",
        "hold_s": 25,
    }


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"key_set_version": float("inf")}, "key_set_version"),
        ({"breakers": {"apt": {"state": "open", "consecutive_failures": [1]}}}, "breakers.apt"),
        ({"breakers": {"apt": {"state": "open", "consecutive_failures": "x"}}}, "breakers.apt"),
        ({"breakers": {"apt": {"state": "stuck"}}}, "breakers.apt"),
        ({"hold_s": 301}, "hold_s"),
    ],
)
def test_a_report_with_a_value_of_the_wrong_kind_is_refused_by_name(
    report: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        CheckinReport.from_json(report)
