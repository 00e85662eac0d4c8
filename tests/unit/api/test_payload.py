"""Input read through the declared shapes: every problem becomes the one error shape,
naming the field (`ids[1]`, `facts.hostname`) the way the caller wrote it."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from msgspec import Meta

from appliance.api.endpoints import Shape
from appliance.api.errors import ApiError
from appliance.api.payload import convert_query, decode_body


class Facts(Shape):
    hostname: str


class Body(Shape):
    ids: Annotated[list[int], Meta(min_length=1, max_length=3)]
    facts: Facts | None = None
    note: str = ""


class Query(Shape):
    limit: Annotated[int, Meta(ge=1, le=500)] = 100
    security: bool | None = None
    order: Literal["asc", "desc"] = "asc"


def problem(body: bytes) -> tuple[int, str, list[dict[str, str]]]:
    with pytest.raises(ApiError) as raised:
        decode_body(body, Body)
    return raised.value.status, raised.value.error, raised.value.errors


def test_a_valid_body_is_read_into_its_shape() -> None:
    body = decode_body(b'{"ids": [1, 2], "facts": {"hostname": "nas"}}', Body)
    assert body == Body(ids=[1, 2], facts=Facts(hostname="nas"))


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"{}", "ids", "is required"),
        (b'{"ids": [1], "nope": 1}', "nope", "is unknown"),
        (b'{"ids": [1, true]}', "ids[1]", "Expected `int`, got `bool`"),
        (b'{"ids": []}', "ids", "Expected `array` of length >= 1"),
        (b'{"ids": [1], "facts": {}}', "facts.hostname", "is required"),
        (b'{"ids": [1], "facts": {"hostname": 7}}', "facts.hostname", "Expected `str`, got `int`"),
        (b"[1, 2]", "body", "Expected `object`, got `array`"),
    ],
)
def test_each_body_problem_names_its_field(raw: bytes, field: str, message: str) -> None:
    assert problem(raw) == (422, "invalid input", [{"field": field, "message": message}])


def test_a_body_that_is_not_json_is_a_400() -> None:
    status, error, _ = problem(b'{"ids": [1,')
    assert (status, error) == (400, "the body is not valid JSON")


def test_an_empty_body_takes_every_default_and_still_needs_the_required_fields() -> None:
    assert problem(b"")[2] == [{"field": "ids", "message": "is required"}]


def test_a_query_is_read_from_its_text() -> None:
    query = convert_query({"limit": "50", "security": "true", "order": "desc"}, Query)
    assert query == Query(limit=50, security=True, order="desc")
    assert convert_query({}, Query) == Query()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "many"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"stauts": "pending"}, "stauts"),
    ],
)
def test_each_query_problem_names_its_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as raised:
        convert_query(params, Query)
    assert raised.value.status == 422 and raised.value.errors[0]["field"] == field
