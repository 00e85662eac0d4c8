"""The API reference page (/api/docs): the OpenAPI document the API serves, laid out
for people, grouped by area. Server-rendered and readable without JavaScript."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.api.openapi import document_for
from web.auth import current_session
from web.templating import render

# A piece of text: (words, whether they are code). Backticks in the document mark code.
Text = list[tuple[str, bool]]
# A type as pieces: (words, the anchor of the shape they name, if they name one).
TypeText = list[tuple[str, str | None]]
_METHODS = ("get", "post", "put", "delete")


def text(value: str) -> Text:
    return [(part, i % 2 == 1) for i, part in enumerate(value.split("`")) if part]


def paragraphs(value: str) -> list[Text]:
    return [text(" ".join(p.split())) for p in value.split("\n\n") if p.strip()]


@dataclass(frozen=True)
class Field:
    name: str
    type: TypeText
    required: bool
    about: Text


@dataclass(frozen=True)
class Answer:
    status: str
    reasons: list[Text]
    shape: TypeText


@dataclass(frozen=True)
class Operation:
    anchor: str
    method: str
    path: str
    summary: str
    about: list[Text]
    requires: str
    parameters: list[Field]
    body: TypeText
    body_fields: list[Field]
    answers: list[Answer]
    errors: list[Answer]
    example: str


@dataclass(frozen=True)
class Area:
    name: str
    anchor: str
    about: Text
    operations: list[Operation]


@dataclass(frozen=True)
class Shape:
    name: str
    anchor: str
    about: list[Text]
    fields: list[Field]
    type: TypeText  # for a shape that is not an object with fields


def shape_anchor(name: str) -> str:
    return f"shape-{name}"


def type_text(schema: dict[str, Any]) -> TypeText:
    """A schema in words: 'list of Update', 'whole number, 1-500', '"asc" or "desc"'."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[1]
        return [(name, shape_anchor(name))]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            pieces: TypeText = []
            for i, option in enumerate(schema[key]):
                pieces += ([(" or ", None)] if i else []) + type_text(option)
            return pieces
    if "enum" in schema:
        return [(" or ".join(json.dumps(v) for v in schema["enum"]), None)]
    kind = schema.get("type")
    if kind == "array":
        return [("list of ", None), *type_text(schema.get("items", {})), *_limits(schema)]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return [("map of text to ", None), *type_text(schema["additionalProperties"])]
    words = {
        "string": "text",
        "integer": "whole number",
        "number": "number",
        "boolean": "true or false",
        "null": "null",
        "object": "object",
    }.get(str(kind), "any JSON")
    if "format" in schema:
        words += f" ({schema['format']})"
    return [(words, None), *_limits(schema)]


def _limits(schema: dict[str, Any]) -> TypeText:
    bounds = [
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
        ("minimum", "maximum", ""),
    ]
    for low_key, high_key, unit in bounds:
        low, high = schema.get(low_key), schema.get(high_key)
        if low is None and high is None:
            continue
        span = (
            f"{low}-{high}"
            if low is not None and high is not None
            else (f"at least {low}" if high is None else f"at most {high}")
        )
        return [(f", {span} {unit}".rstrip(), None)]
    return []


def fields_of(schema: dict[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    found = []
    for name, field in schema.get("properties", {}).items():
        about = field.get("description", "")
        if "default" in field:
            about = f"{about} Default `{json.dumps(field['default'])}`.".strip()
        found.append(Field(name, type_text(field), name in required, text(about)))
    return found


def _answers(responses: dict[str, Any]) -> tuple[list[Answer], list[Answer]]:
    answers, errors = [], []
    for status, response in responses.items():
        lines = response.get("description", "").split("\n")
        reasons = [text(line.removeprefix("- ")) for line in lines if line.strip()]
        schema = next(iter(response.get("content", {}).values()), {}).get("schema")
        shape = type_text(schema) if schema else []
        is_error = bool(schema) and str(schema.get("$ref", "")).endswith("/ErrorAnswer")
        (errors if is_error else answers).append(Answer(status, reasons, shape))
    return answers, errors


def _operation(
    method: str, path: str, operation: dict[str, Any], components: dict[str, Any]
) -> Operation:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    body_schema = body.get("schema", {})
    body_name = str(body_schema.get("$ref", "")).rsplit("/", 1)[-1]
    answers, errors = _answers(operation["responses"])
    parameters = [
        Field(
            f"{p['name']} ({p['in']})",
            type_text(p.get("schema", {})),
            p.get("required", False),
            text(p.get("description", "")),
        )
        for p in operation.get("parameters", [])
    ]
    return Operation(
        anchor=f"op-{operation['operationId']}",
        method=method.upper(),
        path=path,
        summary=operation["summary"],
        about=paragraphs(operation.get("description", "").split("\n\n**Requires:**")[0]),
        requires=operation.get("x-redflag-requires", ""),
        parameters=parameters,
        body=type_text(body_schema) if body_schema else [],
        body_fields=fields_of(components.get(body_name, {})),
        answers=answers,
        errors=errors,
        example=operation.get("x-codeSamples", [{}])[0].get("source", ""),
    )


def reference(document: dict[str, Any]) -> dict[str, Any]:
    """What the page shows, in the order of the document's areas."""
    components = document["components"]["schemas"]
    areas = {
        tag["name"]: Area(tag["name"], f"area-{i}", text(tag.get("description", "")), [])
        for i, tag in enumerate(document["tags"])
    }
    for path, methods in document["paths"].items():
        for method in _METHODS:
            if method in methods:
                operation = methods[method]
                found = _operation(method, path, operation, components)
                areas[operation["tags"][0]].operations.append(found)
    shapes = [
        Shape(
            name,
            shape_anchor(name),
            paragraphs(schema.get("description", "")),
            fields_of(schema),
            [] if "properties" in schema else type_text(schema),
        )
        for name, schema in sorted(components.items())
    ]
    schemes = [
        (name, scheme.get("name", "Authorization: Bearer"), text(scheme.get("description", "")))
        for name, scheme in document["components"]["securitySchemes"].items()
    ]
    return {
        "title": document["info"]["title"],
        "version": document["info"]["version"],
        "intro": paragraphs(document["info"]["description"]),
        "areas": list(areas.values()),
        "shapes": shapes,
        "schemes": schemes,
        "count": sum(len(a.operations) for a in areas.values()),
    }


async def api_docs(request: Request) -> Response:
    """Anyone may read the reference; a logged-in visitor also gets the navigation."""
    await current_session(request)
    return render(request, "api_docs.html", reference(document_for(request.app)))


routes: list[BaseRoute] = [Route("/api/docs", api_docs, methods=["GET"])]
