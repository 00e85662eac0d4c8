"""GET /api/v1/openapi.json: the API's own reference, made from its declarations."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from appliance.api.auth import PUBLIC
from appliance.api.endpoints import API, Call, Document, endpoint
from appliance.api.openapi import document_for


@endpoint(
    "GET",
    f"{API}/openapi.json",
    area="Reference",
    summary="This API's OpenAPI document",
    requires=PUBLIC,
    answer=Document("application/json", "The OpenAPI 3.1 document."),
)
async def openapi_json(call: Call) -> Response:
    """Every endpoint with its parameters, body, answers, errors and credentials, as
    OpenAPI 3.1; the /api/docs page shows the same for people."""
    return JSONResponse(document_for(call.request.app))
