"""Every record of the wire format survives its own JSON: `from_json(to_json(x)) == x`
through real JSON text, and `from_json` refuses what is not such a record with
ProtocolError, naming the field, never with another exception."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.install_results import DryRunResult, InstallResult
from kernel.protocol import (
    CheckinAnswer,
    CheckinReport,
    Command,
    Event,
    HostFacts,
    KeySet,
    ProtocolError,
    RegistrationRequest,
    RootCertificate,
    SignedDocument,
    UpdateRecord,
)
from tests.unit.kernel import wire_strategies as wire

no_database = settings(database=None, deadline=None)


def _signed_document(value: Any) -> SignedDocument:
    return SignedDocument.from_json(value, "envelope")


# (strategy of records, how JSON is read back into one)
RECORDS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Any]]] = {
    "key set": (wire.key_sets, KeySet.from_json),
    "signed document": (wire.signed_documents, _signed_document),
    "root certificate": (wire.root_certificates, RootCertificate.from_json),
    "command": (wire.commands, Command.from_json),
    "host facts": (wire.host_facts, HostFacts.from_json),
    "registration": (wire.registration_requests, RegistrationRequest.from_json),
    "check-in report": (wire.checkin_reports, CheckinReport.from_json),
    "check-in answer": (wire.checkin_answers, CheckinAnswer.from_json),
    "update": (wire.update_records, UpdateRecord.from_json),
    "event": (wire.events, Event.from_json),
    "install result": (wire.install_results, InstallResult.from_json),
    "dry run": (wire.dry_run_results, DryRunResult.from_json),
}
NAMES = sorted(RECORDS)


def through_json_text(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


@pytest.mark.parametrize("name", NAMES)
@no_database
@given(data=st.data())
def test_every_record_reads_back_from_its_json_as_it_was(name: str, data: st.DataObject) -> None:
    strategy, read = RECORDS[name]
    record = data.draw(strategy)
    assert read(through_json_text(record.to_json())) == record


@pytest.mark.parametrize("name", NAMES)
@settings(no_database, max_examples=10)
@given(data=st.data())
def test_a_record_with_any_value_spoiled_is_read_or_refused_with_protocol_error(
    name: str, data: st.DataObject
) -> None:
    strategy, read = RECORDS[name]
    for path, value in wire.spoilings(data.draw(strategy).to_json()):
        try:
            read(value)
        except ProtocolError:
            pass
        except Exception as exc:
            raise AssertionError(f"{name} with {path} spoiled: {exc!r}") from exc


@pytest.mark.parametrize("name", NAMES)
@no_database
@given(value=wire.json_values)
def test_any_json_value_is_read_or_refused_with_protocol_error(name: str, value: Any) -> None:
    with contextlib.suppress(ProtocolError):
        RECORDS[name][1](value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [None, [], "record", 7, True])
def test_what_is_not_an_object_is_refused(name: str, value: Any) -> None:
    with pytest.raises(ProtocolError):
        RECORDS[name][1](value)
