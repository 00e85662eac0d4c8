"""Tags a host asks for at registration: part of the signed request, and only in the
form the agent cleaned them to (kernel/tags.py), so that the proof covers what is kept."""

from __future__ import annotations

import pytest

from kernel.protocol import HostFacts, ProtocolError, RegistrationRequest, b64encode

FACTS = HostFacts(hostname="web-1", machine_fingerprint="fp")


def request(**more: object) -> RegistrationRequest:
    return RegistrationRequest(
        token="rf_reg_x", public_key=b64encode(b"k" * 32), facts=FACTS, timestamp=1, **more
    )


def test_a_request_without_tags_signs_the_same_bytes_as_before_tags_existed() -> None:
    assert b'"tags"' not in request().signed_part()
    assert "tags" not in request().to_json()


def test_tags_are_signed_and_read_back() -> None:
    tagged = request(tags=("lab", "web"))
    assert b'"tags":["lab","web"]' in tagged.signed_part()
    assert RegistrationRequest.from_json(tagged.to_json()).tags == ("lab", "web")


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        (["Web"], "tags: lower case, sorted, each once"),
        (["web", "lab"], "tags: lower case, sorted, each once"),
        (["lab", "lab"], "tags: lower case, sorted, each once"),
        (["-o"], "tags: a tag is 1-40 letters, digits and . _ : - and starts with a letter"),
        ("lab", "tags: a list of strings"),
        ([1], "tags: a list of strings"),
        ([f"t{i}" for i in range(51)], "tags: an agent carries at most 50 tags"),
    ],
)
def test_tags_not_as_the_agent_cleans_them_are_refused(tags: object, reason: str) -> None:
    with pytest.raises(ProtocolError, match=f"^{reason}"):
        RegistrationRequest.from_json({**request().to_json(), "tags": tags})
