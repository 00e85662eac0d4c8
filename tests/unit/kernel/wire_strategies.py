"""Hypothesis strategies for every record of the wire format, each in its canonical form
(what `from_json` gives back), and for the hostile JSON it must refuse."""

from __future__ import annotations

import base64
import copy
import string
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from kernel.image_results import (
    IMAGE_STATES,
    ComposePlan,
    ComposeRun,
    ImageInstall,
    ImagePlan,
    RestartNeeded,
)
from kernel.install_results import DryRunResult, InstalledPackage, InstallResult, PlannedChange
from kernel.protocol import (
    COMMAND_RESULT_STATES,
    MAX_HOLD_S,
    SEVERITIES,
    CheckinAnswer,
    CheckinReport,
    Command,
    Event,
    HostFacts,
    KeySet,
    PublishedKey,
    RegistrationRequest,
    RootCertificate,
    SignedDocument,
    UpdateRecord,
)

# Printable text: what `_fact` accepts and `sanitise_text` leaves as it is.
PRINTABLE = st.characters(categories=("L", "N", "P", "S")) | st.just(" ")


def printable(max_size: int) -> st.SearchStrategy[str]:
    return st.text(PRINTABLE, max_size=max_size)


def words(max_size: int = 40, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(
        string.ascii_letters + string.digits + "._-:/ ", min_size=min_size, max_size=max_size
    )


whole = st.integers(min_value=-(2**63), max_value=2**63 - 1)
seconds = st.integers(min_value=0, max_value=2**40)
key_ids = st.from_regex(r"[a-z2-7]{16}", fullmatch=True)
agent_ids = st.uuids().map(str)

# Any JSON value, the way json.loads returns one (NaN and infinities included: it
# accepts them).
json_scalars = st.none() | st.booleans() | whole | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# JSON values that compare equal after a trip through JSON text (no NaN).
plain_scalars = (
    st.none() | st.booleans() | whole | st.floats(allow_nan=False, allow_infinity=False) | words()
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words(8), inner, max_size=4),
    max_leaves=12,
)
plain_objects = st.dictionaries(words(8), plain_values, max_size=4)

# --- kernel/protocol.py ---------------------------------------------------------------

published_keys = st.builds(
    PublishedKey,
    key_id=key_ids,
    public_key=st.binary(min_size=32, max_size=32).map(
        lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")
    ),
    not_before=seconds,
    not_after=st.none() | seconds,
)
key_sets = st.builds(
    KeySet,
    version=st.integers(min_value=1, max_value=2**31),
    root_key_id=key_ids,
    issued_at=seconds,
    keys=st.lists(published_keys, max_size=3).map(tuple),
    revoked=st.lists(key_ids, max_size=3).map(tuple),
)
signed_documents = st.builds(
    SignedDocument, document=st.text(max_size=80), signer=key_ids, signature=words(90)
)
root_certificates = st.builds(
    RootCertificate,
    key_id=key_ids,
    public_key=words(60),
    previous_key_id=key_ids,
    issued_at=seconds,
)
commands = st.builds(
    Command,
    command_id=st.integers(min_value=1, max_value=2**53),
    agent_id=agent_ids,
    seq=st.integers(min_value=1, max_value=2**53),
    kind=st.from_regex(r"[a-z][a-z0-9_]{0,39}", fullmatch=True),
    issued_at=seconds,
    expires_at=seconds,
    key_id=key_ids,
    params=plain_objects,
)
host_facts = st.builds(
    HostFacts,
    hostname=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True),
    machine_fingerprint=printable(128),
    os_family=printable(200),
    os_name=printable(200),
    os_version=printable(200),
    kernel=printable(200),
    arch=printable(200),
    agent_version=printable(200),
)
registration_requests = st.builds(
    RegistrationRequest,
    token=words(80),
    public_key=published_keys.map(lambda key: key.public_key),
    facts=host_facts,
    timestamp=seconds,
    proof=words(90),
    tags=st.lists(
        st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,39}", fullmatch=True), max_size=5, unique=True
    ).map(lambda tags: tuple(sorted(tags))),
)
breaker_snapshots = st.fixed_dictionaries(
    {
        "state": st.sampled_from(("closed", "open", "half_open")),
        "consecutive_failures": st.integers(min_value=0, max_value=10**6),
        "last_error": printable(500),
    }
)
checkin_reports = st.builds(
    CheckinReport,
    machine_fingerprint=printable(128),
    key_set_version=st.integers(min_value=0, max_value=2**31),
    agent_version=printable(200),
    breakers=st.dictionaries(printable(64), breaker_snapshots, max_size=5),
    reboot_required=st.none() | st.booleans(),
    boot_time=printable(40),
    hold_s=st.integers(min_value=0, max_value=MAX_HOLD_S),
)
envelopes = signed_documents.map(SignedDocument.to_json)
checkin_answers = st.builds(
    CheckinAnswer,
    poll_interval_s=st.integers(min_value=1, max_value=86_400),
    key_set_version=st.integers(min_value=0, max_value=2**31),
    trust=st.none() | plain_objects,
    commands=st.lists(envelopes, max_size=3),
    hold_max_s=st.integers(min_value=0, max_value=MAX_HOLD_S),
)
apt_names = st.from_regex(r"[a-z0-9][a-z0-9+.-]{0,30}", fullmatch=True).filter(
    lambda name: ".." not in name
)
versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.+~:_@^-]{0,30}", fullmatch=True)
update_records = st.builds(
    UpdateRecord,
    source=st.just("apt"),
    package=apt_names,
    available_version=versions,
    current_version=st.just("") | versions,
    arch=st.from_regex(r"[A-Za-z0-9_-]{0,32}", fullmatch=True),
    origin=printable(200),
    severity=st.sampled_from(SEVERITIES),
    security=st.booleans(),
    advisories=st.lists(
        st.from_regex(r"CVE-20[0-9]{2}-[0-9]{4,7}", fullmatch=True), max_size=3
    ).map(tuple),
    size_bytes=st.none() | st.integers(min_value=0, max_value=2**50),
    reboot_required=st.booleans(),
    held=st.booleans(),
    details=plain_objects,
)
events = st.one_of(
    st.builds(
        Event,
        uuid=st.uuids().map(str),
        kind=st.sampled_from(("log", "scanner.failed", "disk.failing")),
        occurred_at=seconds,
        payload=plain_objects,
    ),
    st.builds(
        Event,
        uuid=st.uuids().map(str),
        kind=st.just("command.result"),
        occurred_at=seconds,
        payload=st.fixed_dictionaries(
            {
                "command_id": st.integers(min_value=1, max_value=2**53),
                "status": st.sampled_from(COMMAND_RESULT_STATES),
                "result": plain_objects,
            }
        ),
    ),
)

# --- kernel/install_results.py, kernel/image_results.py --------------------------------

names = words(40, min_size=1)
name_lists = st.lists(names, max_size=4).map(tuple)
restarts_needed = st.builds(RestartNeeded, container=names, reason=words(60))
compose_plans = st.builds(
    ComposePlan,
    project=names,
    working_dir=words(60),
    services=name_lists,
    containers=name_lists,
    command=name_lists,
)
image_plans = st.builds(
    ImagePlan,
    image=names,
    pull=names,
    recreate=st.lists(compose_plans, max_size=2).map(tuple),
    restart_needed=st.lists(restarts_needed, max_size=2).map(tuple),
)
compose_runs = st.builds(
    ComposeRun,
    project=names,
    services=name_lists,
    containers=name_lists,
    exit_code=st.integers(min_value=-1, max_value=255),
)
digests = st.none() | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)
image_installs = st.builds(
    ImageInstall,
    image=names,
    package=names,
    status=st.sampled_from(IMAGE_STATES),
    image_id=digests,
    previous_digest=digests,
    digest=digests,
    recreated=st.lists(compose_runs, max_size=2).map(tuple),
    restart_needed=st.lists(restarts_needed, max_size=2).map(tuple),
    message=words(60),
    error=st.none() | words(60),
)
installed_packages = st.builds(
    InstalledPackage,
    package=names,
    from_version=words(30),
    to_version=words(30),
    image=words(30),
    status=st.just("") | st.sampled_from(IMAGE_STATES),
)
install_results = st.builds(
    InstallResult,
    installed=st.lists(installed_packages, max_size=3).map(tuple),
    failed=name_lists,
    unchanged=name_lists,
    output_tail=st.text(max_size=200),
    reboot_required=st.booleans(),
    error=st.none() | st.text(max_size=60),
    exit_code=st.none() | st.integers(min_value=-(2**31), max_value=2**31),
    not_in_use=name_lists,
    images=st.lists(image_installs, max_size=2).map(tuple),
)
planned_changes = st.builds(
    PlannedChange,
    package=names,
    arch=words(10),
    from_version=words(30),
    to_version=words(30),
    repository=words(20),
    origin=words(40),
    replaced_by=words(20),
)
changes = st.lists(planned_changes, max_size=3).map(tuple)
dry_run_results = st.builds(
    DryRunResult,
    upgrades=changes,
    installs=changes,
    removals=changes,
    downgrades=changes,
    skipped=changes,
    missing=name_lists,
    raw=st.text(max_size=200),
    images=st.lists(image_plans, max_size=2).map(tuple),
    not_in_use=name_lists,
)


def paths(value: Any) -> Iterator[tuple[Any, ...]]:
    """The path to every value inside `value` (keys and indexes), at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (key,)
        if isinstance(child, (dict, list)):
            for rest in paths(child):
                yield (key, *rest)


def spoilings(record_json: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The record's JSON with one value at a time, at every depth, replaced by each
    HOSTILE value or left out: (path, spoiled JSON)."""
    for path in paths(record_json):
        for replacement in HOSTILE:
            value = copy.deepcopy(record_json)
            container = value
            for key in path[:-1]:
                container = container[key]
            if replacement is LEAVE_OUT:
                del container[path[-1]]
            else:
                container[path[-1]] = replacement
            yield path, value


LEAVE_OUT = object()
# What a careless or hostile sender puts where a value belongs (json.loads accepts
# NaN and the infinities).
HOSTILE = [LEAVE_OUT, None, True, -1, 2**64, float("inf"), float("nan"), "", "x", [], [1], {}]
