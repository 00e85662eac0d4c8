"""The OpenAPI 3.1 document, made from the endpoint declarations behind the app's
routes; `GET /api/v1/openapi.json` serves it and the /api/docs page renders it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette

from appliance import __version__
from appliance.api.auth import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from appliance.api.endpoints import Document, Endpoint, declared_endpoints
from appliance.api.errors import ErrorAnswer
from appliance.api.payload import MAX_IDEMPOTENCY_KEY_CHARS

REF = "#/components/schemas/{name}"
_AGENT_HEADERS = (
    "X-RedFlag-Agent",
    "X-RedFlag-Timestamp",
    "X-RedFlag-Nonce",
    "X-RedFlag-Signature",
)
_PATH_PARAM = re.compile(r"{(?P<name>\w+)(?::(?P<kind>\w+))?}")

DESCRIPTION = """\
The JSON API of a RedFlag appliance: everything the web UI does, for scripts and tools,
and the endpoints the agents call.

Scripts authenticate with an API token (`Authorization: Bearer rf_api_...`; make one on
the Users page or with `redflag-appliance api-token create`). A token acts as its user,
with that user's role: viewer reads, operator also decides and installs updates,
admin also manages tokens, keys, users, settings and backups.

Every error answers with one shape: `{"ok": false, "error": "...", "errors":
[{"field": "...", "message": "..."}], "status": 422}`. Endpoints that create commands
take an `Idempotency-Key` header: the same key again answers with what the first call
made and creates nothing new.
"""

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`rf_api_...`); it acts as its user, with their role.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The web UI's login session (what the browser sends).",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
        "description": "With the session cookie, a change also carries the session's CSRF "
        "token: another site can make a browser send the cookie, never this header.",
    },
    "agentId": {
        "type": "apiKey",
        "in": "header",
        "name": "X-RedFlag-Agent",
        "description": "The agent's id (a lowercase UUID).",
    },
    "agentTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": "X-RedFlag-Timestamp",
        "description": "Unix seconds; at most 5 minutes from the appliance's clock.",
    },
    "agentNonce": {
        "type": "apiKey",
        "in": "header",
        "name": "X-RedFlag-Nonce",
        "description": "16-64 base64url characters, never used before by this agent.",
    },
    "agentSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-RedFlag-Signature",
        "description": "base64url Ed25519 signature of the lines `RF-REQUEST-1`, method, "
        "path, timestamp, nonce, hex SHA-256 of the body and agent id, joined by `\\n`.",
    },
}

PATH_PARAMETERS = {
    "agent_id": "The agent's id (a lowercase UUID).",
    "tag": "A tag of the agent.",
    "token_id": "The token's id.",
    "command_id": "The command's id.",
    "key_id": "The signing key's id.",
    "name": "The backup's file name.",
    "username": "The user's name.",
    "path": "The file's hash-prefixed path, as targets.json lists it.",
    "release_id": "The release's id.",
}

AREAS = {
    "Health": "Liveness, readiness and metrics; no credentials needed.",
    "Agent protocol": "What agents call: the trust bundle, registration, check-in, events.",
    "Dashboard": "The fleet summary.",
    "Agents": "Agents, their tags, hardware binding, rapid mode and commands.",
    "Updates": "Pending updates across the fleet: decisions, dry-runs, installs, history.",
    "Commands": "Commands across the fleet: list, retry, cancel.",
    "Registration tokens": "Tokens that let new agents register.",
    "Keys": "The signing key hierarchy.",
    "Audit": "The hash-chained audit log.",
    "Settings": "Runtime settings.",
    "Backups": "Database snapshots.",
    "Releases": "Agent releases and the TUF repository agents update from.",
    "Users": "Dashboard users and their API tokens.",
    "Reference": "This document.",
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any 1-100 printable characters, e.g. a UUID. The same key again (from "
    "the same user) answers with the commands made the first time and creates nothing.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS},
    "example": "5b0f3c8e-2f53-4a5e-9c1e-6f0d8a1b7c42",
}


def openapi_path(path: str) -> str:
    """Starlette's `/tokens/{token_id:int}` as OpenAPI's `/tokens/{token_id}`."""
    return _PATH_PARAM.sub(lambda m: "{" + m["name"] + "}", path)


def document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing `endpoints`."""
    shapes = _Shapes(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for declared in endpoints:
        operation = _operation(declared, shapes)
        paths.setdefault(openapi_path(declared.path), {})[declared.method.lower()] = operation
    areas = list(dict.fromkeys(e.area for e in endpoints))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RedFlag appliance API",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "tags": [{"name": a, "description": AREAS.get(a, "")} for a in areas],
        "paths": paths,
        "components": {"schemas": shapes.components, "securitySchemes": SECURITY_SCHEMES},
    }


def document_for(app: Starlette) -> dict[str, Any]:
    """The app's document, made once: its routes do not change while it runs."""
    cached = getattr(app.state, "openapi_document", None)
    if cached is None:
        cached = document(declared_endpoints(app.routes))
        app.state.openapi_document = cached
    return cached


class _Shapes:
    """JSON schemas of every declared shape: bodies and answers as shared components,
    query shapes unpacked into one parameter a field."""

    def __init__(self, endpoints: Sequence[Endpoint]):
        named: list[Any] = [ErrorAnswer]
        for declared in endpoints:
            named += [declared.body] if declared.body is not None else []
            named += declared.answer_shapes
        named = list(dict.fromkeys(named))
        queries = list(dict.fromkeys(e.query for e in endpoints if e.query is not None))
        schemas, components = msgspec.json.schema_components([*named, *queries], ref_template=REF)
        self.refs = dict(zip([*named, *queries], schemas, strict=True))
        self.queries = {q: components.pop(self._name(q)) for q in queries}
        self.components = components

    def _name(self, shape: type[Any]) -> str:
        return str(self.refs[shape]["$ref"]).rsplit("/", 1)[1]

    def has_required_fields(self, shape: type[Any]) -> bool:
        return bool(self.components[self._name(shape)].get("required"))

    def ref(self, shape: type[Any]) -> dict[str, Any]:
        return self.refs[shape]

    def answer(self, declared: Endpoint) -> dict[str, Any]:
        refs = [self.refs[shape] for shape in declared.answer_shapes]
        return refs[0] if len(refs) == 1 else {"oneOf": refs}

    def query_parameters(self, shape: type[Any], example: dict[str, Any]) -> list[dict[str, Any]]:
        component = self.queries[shape]
        required = set(component.get("required", []))
        parameters = []
        for field, schema in component.get("properties", {}).items():
            parameter = {
                "name": field,
                "in": "query",
                "required": field in required,
                "schema": {k: v for k, v in schema.items() if k != "description"},
            }
            if "description" in schema:
                parameter["description"] = schema["description"]
            if field in example:
                parameter["example"] = example[field]
            parameters.append(parameter)
        return parameters


def _doc(shape: type[Any]) -> str:
    """The first paragraph of a shape's own docstring (not a dataclass's generated one)."""
    doc = shape.__doc__ or ""
    if not doc or doc.startswith(f"{shape.__name__}("):  # a dataclass's generated doc
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _operation(declared: Endpoint, shapes: _Shapes) -> dict[str, Any]:
    example = dict(declared.example or {})
    description = declared.description
    if declared.requires.role is not None or declared.requires.schemes:
        description += f"\n\n**Requires:** {declared.requires.description}"
    operation: dict[str, Any] = {
        "operationId": declared.name,
        "summary": declared.summary,
        "description": description.strip(),
        "tags": [declared.area],
        "x-redflag-requires": declared.requires.name,
        "parameters": _path_parameters(declared.path),
        "responses": _responses(declared, shapes),
        "security": declared.requires.security(declared.method),
    }
    if declared.query is not None:
        operation["parameters"] += shapes.query_parameters(declared.query, example)
    if declared.idempotency_key:
        operation["parameters"].append(IDEMPOTENCY_KEY)
    if declared.body is not None:
        body: dict[str, Any] = {"schema": shapes.ref(declared.body)}
        if example:
            body["example"] = example
        required = shapes.has_required_fields(declared.body)  # else an empty body will do
        operation["requestBody"] = {"required": required, "content": {"application/json": body}}
    operation["x-codeSamples"] = [{"lang": "Shell", "label": "curl", "source": curl(declared)}]
    return operation


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": found["name"],
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS.get(found["name"], ""),
            "schema": {"type": "integer" if found["kind"] == "int" else "string"},
        }
        for found in _PATH_PARAM.finditer(path)
    ]


def _responses(declared: Endpoint, shapes: _Shapes) -> dict[str, Any]:
    if isinstance(declared.answer, Document):
        json_document = declared.answer.media_type == "application/json"
        schema = {"type": "object" if json_document else "string"}
        content = {declared.answer.media_type: {"schema": schema}}
        summary = declared.answer.description
    else:
        content = {"application/json": {"schema": shapes.answer(declared)}}
        docs = [_doc(shape) for shape in declared.answer_shapes]
        summary = " Or: ".join(d for d in docs if d) or "The answer."
    responses: dict[str, Any] = {str(declared.status): {"description": summary, "content": content}}
    for status, why in declared.also.items():
        responses[str(status)] = {"description": why, "content": content}
    reasons: dict[int, list[str]] = {}
    for status, why in _failures(declared):
        reasons.setdefault(status, []).append(why)
    error = {"application/json": {"schema": shapes.ref(ErrorAnswer)}}
    for status in sorted(reasons):
        listed = list(dict.fromkeys(reasons[status]))
        text = listed[0] if len(listed) == 1 else "\n".join(f"- {r}" for r in listed)
        responses[str(status)] = {"description": text, "content": error}
    return responses


def _failures(declared: Endpoint) -> list[tuple[int, str]]:
    """Every error the endpoint can answer with: those of its requirement, of reading
    its input, and its own."""
    found = declared.requires.refusals(declared.method)
    if declared.takes_request:  # reads its own body: its failures say how it refuses one
        return found + [(f.status, f.reason) for f in declared.failures]
    if declared.body is not None:
        found.append((400, "the body is not valid JSON"))
        found.append((422, "a body field is missing, unknown or not valid; `errors` names it"))
    if declared.query is not None:
        found.append((422, "a query parameter is unknown or not valid; `errors` names it"))
    if declared.idempotency_key:
        found.append((422, "the `Idempotency-Key` is not 1-100 printable characters"))
    found += [(f.status, f.reason) for f in declared.failures]
    return found


def curl(declared: Endpoint) -> str:
    """A command that calls the endpoint, with $APPLIANCE and $TOKEN to fill in."""
    path = _PATH_PARAM.sub(lambda m: m["name"].upper(), declared.path)
    parts = ["curl"]
    if declared.requires.role is not None:
        parts.append('-H "Authorization: Bearer $TOKEN"')
    elif declared.requires.schemes:  # signed by the agent; shown for its shape only
        parts += [f'-H "{h}: ${h.rsplit("-", 1)[1].upper()}"' for h in _AGENT_HEADERS]
    if declared.idempotency_key:
        parts.append('-H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)"')
    example = dict(declared.example or {})
    if declared.method not in SAFE_METHODS:
        parts.append(f"-X {declared.method}")
    query = ""
    if declared.query is not None and example:
        query = "?" + "&".join(f"{k}={_text(v)}" for k, v in example.items())
    parts.append(f'"$APPLIANCE{path}{query}"')
    if declared.body is not None and example:
        parts.append("-d '" + json.dumps(example, separators=(",", ":")) + "'")
    return " ".join(parts)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
