"""What every request meets first (appliance/edge.py): the body cap, answered in the
API's JSON error shape before the body is read, and the security headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from appliance.app import MAX_BODY_BYTES
from tests.support import InProcessAppliance

pytestmark = pytest.mark.slow

EVENTS = "/api/v1/agent/events"


def test_a_body_declared_larger_than_the_cap_is_refused_with_a_json_413(
    appliance: InProcessAppliance,
) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = httpx.post(f"{appliance.url}{EVENTS}", content=body, timeout=30)
    assert response.status_code == 413
    assert response.json()["ok"] is False and response.json()["status"] == 413
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_chunked_body_is_counted_as_it_arrives_and_refused_past_the_cap(
    appliance: InProcessAppliance,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    response = httpx.post(f"{appliance.url}{EVENTS}", content=chunks(), timeout=30)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_a_body_under_the_cap_reaches_the_endpoint(appliance: InProcessAppliance) -> None:
    response = httpx.post(f"{appliance.url}{EVENTS}", content=b"x" * 1000, timeout=30)
    assert response.status_code == 401  # unsigned: the endpoint itself answered


def test_every_answer_carries_the_security_headers_and_none_twice(
    appliance: InProcessAppliance,
) -> None:
    for path in ("/healthz", "/login", "/api/v1/agents", "/no-such-page"):
        response = httpx.get(f"{appliance.url}{path}")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert response.headers.get_list("x-frame-options") == ["DENY"], path
        assert "strict-transport-security" not in response.headers, path  # plain HTTP
