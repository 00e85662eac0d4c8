"""One declaration per API endpoint: its path, what the caller must prove, its input
and answer shapes and its errors. The route table, the reading of input and the
OpenAPI document are all made from these declarations, so a route cannot exist
without being documented, nor check its input a second way.

    @endpoint("POST", f"{API}/updates/approve", area="Updates", requires=OPERATOR,
              summary="Approve updates", body=UpdateIds, answer=Decided,
              failures=[Failure(422, "an id names no update")])
    async def approve(call: Call) -> Decided: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.api.auth import Requirement, actor_of
from appliance.api.errors import ApiError
from appliance.api.payload import client_idempotency_key, convert_query, decode_body
from appliance.domain.actors import Actor
from appliance.domain.errors import DomainError
from appliance.runtime import Appliance
from appliance.services.users import Principal
from appliance.store.database import Database

API = "/api/v1"


class Shape(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every request and answer shape: an unknown field in a request is an
    error (a typo is never silently ignored), and an answer holds only what is declared."""


class Done(Shape, kw_only=True):
    """The answer to a change that worked: `ok` is always true (errors say false)."""

    ok: Literal[True] = True


@dataclass(frozen=True)
class Failure:
    """An error an endpoint can answer with, and why. With `when`, raising that
    exception in the handler answers with this status; `message` (default: the
    exception's text, `{exc}`) is the error; with `field` (which may also name a part of
    the exception, e.g. `{exc.field}`), a 422 that names that field."""

    status: int
    reason: str
    when: type[Exception] | tuple[type[Exception], ...] = ()
    message: str = "{exc}"
    field: str | None = None

    def __post_init__(self) -> None:
        # An error kind answers with one status everywhere (appliance/domain/errors.py).
        kinds = self.when if isinstance(self.when, tuple) else (self.when,)
        for kind in kinds:
            if issubclass(kind, DomainError):
                assert kind.status == self.status, f"{kind.__name__} is {kind.status}"

    def error(self, exc: Exception) -> ApiError:
        text = self.message.format(exc=exc)
        if self.field is not None:
            field = self.field.format(exc=exc)
            return ApiError(422, "invalid input", [{"field": field, "message": text}])
        return ApiError(self.status, text)


@dataclass(frozen=True)
class Document:
    """An answer that is a document of its own, sent as it is: a backup file, the
    metrics text, the OpenAPI document. Its handler returns the Response."""

    media_type: str
    description: str


@dataclass(frozen=True)
class Reply:
    """A handler's answer when its status or headers differ from the declared ones."""

    value: Any
    status: int | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Call:
    """One request to an endpoint, its input already read through the declared shapes."""

    request: Request
    principal: Principal | None
    actor: Actor
    body: Any = None
    query: Any = None
    idempotency_key: str | None = None

    @property
    def appliance(self) -> Appliance:
        return self.request.state.appliance

    @property
    def db(self) -> Database:
        return self.request.state.appliance.db

    @property
    def username(self) -> str:
        assert self.principal is not None, "only for endpoints that require a role"
        return self.principal.username

    def path(self, name: str) -> Any:
        return self.request.path_params[name]


Answer = type[Any] | tuple[type[Any], ...] | Document


@dataclass(frozen=True)
class Endpoint:
    """The declaration of one method on one path, and the route that serves it."""

    method: str
    path: str
    handler: Callable[[Any], Awaitable[Any]]
    area: str
    summary: str
    requires: Requirement
    answer: Answer
    status: int = 200
    also: Mapping[int, str] = field(default_factory=dict)
    query: type[Any] | None = None
    body: type[Any] | None = None
    failures: Sequence[Failure] = ()
    idempotency_key: bool = False
    example: Mapping[str, Any] | None = None
    about: str = ""  # the description, when the handler's docstring is not it
    # The agent protocol's endpoints read their body themselves (a signature covers
    # the exact bytes; kernel/protocol.py's records parse it): they get the request.
    takes_request: bool = False

    def __post_init__(self) -> None:
        assert not self.idempotency_key or self.requires.role, "keys are per user"
        assert not (self.query and self.body), "input is a query or a body, not both"

    @property
    def name(self) -> str:
        return f"{self.handler.__module__.rsplit('.', 1)[-1]}.{self.handler.__name__}"

    @property
    def description(self) -> str:
        return self.about or inspect.getdoc(self.handler) or ""

    @property
    def answer_shapes(self) -> tuple[type[Any], ...]:
        """The JSON answer's shapes: usually one; a few endpoints answer in two."""
        if isinstance(self.answer, tuple):
            return self.answer
        return (self.answer,) if isinstance(self.answer, type) else ()

    @property
    def success_statuses(self) -> set[int]:
        return {self.status, *self.also}

    async def run(self, request: Request) -> Response:
        principal = await self.requires.check(request)
        if self.takes_request:
            return await self._mapping_failures(self.handler, request)
        body = decode_body(await request.body(), self.body) if self.body else None
        key = None
        if self.idempotency_key:
            assert principal is not None
            fallback = getattr(body, "idempotency_key", None)
            key = client_idempotency_key(request, principal.username, fallback)
        query = convert_query(request.query_params, self.query) if self.query else None
        call = Call(request, principal, actor_of(request, principal), body, query, key)
        return self._response(await self._mapping_failures(self.handler, call))

    async def _mapping_failures(self, handler: Callable[[Any], Awaitable[Any]], arg: Any) -> Any:
        mapped = tuple(f for f in self.failures if f.when)
        try:
            return await handler(arg)
        except tuple(f.when for f in mapped) as exc:  # type: ignore[misc]
            failure = next(f for f in mapped if isinstance(exc, f.when))
            raise failure.error(exc) from None

    def _response(self, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        reply = result if isinstance(result, Reply) else Reply(result)
        status = reply.status or self.status
        # A handler that answers outside its declaration is a bug the tests must see.
        if status not in self.success_statuses:
            raise TypeError(f"{self.name} answered {status}, which it does not declare")
        if not isinstance(reply.value, self.answer_shapes):
            raise TypeError(f"{self.name} answered {type(reply.value).__name__}")
        return Response(
            msgspec.json.encode(reply.value),
            status_code=status,
            media_type="application/json",
            headers=dict(reply.headers or {}),
        )


def endpoint(
    method: str,
    path: str,
    *,
    area: str,
    summary: str,
    requires: Requirement,
    answer: Answer,
    status: int = 200,
    also: Mapping[int, str] | None = None,
    query: type[Any] | None = None,
    body: type[Any] | None = None,
    failures: Sequence[Failure] = (),
    idempotency_key: bool = False,
    example: Mapping[str, Any] | None = None,
    description: str = "",
    takes_request: bool = False,
) -> Callable[[Callable[[Any], Awaitable[Any]]], Endpoint]:
    """Declare the decorated handler as the endpoint `method path`. Its description in
    the API reference is `description`, else the handler's docstring."""

    def declare(handler: Callable[[Any], Awaitable[Any]]) -> Endpoint:
        return Endpoint(
            method=method,
            path=path,
            handler=handler,
            area=area,
            summary=summary,
            requires=requires,
            answer=answer,
            status=status,
            also=also or {},
            query=query,
            body=body,
            failures=failures,
            idempotency_key=idempotency_key,
            example=example,
            about=description,
            takes_request=takes_request,
        )

    return declare


class EndpointRoute(Route):
    """The route that serves one declared endpoint."""

    def __init__(self, declared: Endpoint):
        async def serve(request: Request) -> Response:
            return await declared.run(request)

        # /metrics labels requests by the name of the route's function.
        serve.__name__ = serve.__qualname__ = declared.handler.__name__
        super().__init__(declared.path, serve, methods=[declared.method], name=declared.name)
        self.declared = declared


def routes(*endpoints: Endpoint) -> list[BaseRoute]:
    """The routes that serve these endpoints, in the order given."""
    return [EndpointRoute(e) for e in endpoints]


def declared_endpoints(app_routes: Sequence[BaseRoute]) -> list[Endpoint]:
    """The declarations behind an app's routes (what the API reference describes)."""
    return [route.declared for route in app_routes if isinstance(route, EndpointRoute)]
