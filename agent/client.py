"""HTTP to the appliance: every request after registration is signed.

Requests go through agent/http_client.py (the standard library); tests may pass an
httpx transport to watch or change the traffic between the real agent and appliance.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from nacl.signing import SigningKey

from agent.http_client import Headers, HTTPClient, Response
from kernel.protocol import RequestSignature, canonical_json, request_signing_message

API = "/api/v1"


class ApplianceError(RuntimeError):
    """The appliance answered with an error; `status`, its `error` text and its
    `errors` ({"field": ..., "message": ...} each, the API's one error shape)."""

    def __init__(
        self,
        status: int,
        error: str,
        retry_after: float | None = None,
        errors: list[dict[str, str]] | None = None,
    ):
        super().__init__(f"appliance answered {status}: {error}")
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.errors = errors or []

    def about(self, field: str) -> str | None:
        """The message the answer gives about `field`, if any."""
        return next((e.get("message") for e in self.errors if e.get("field") == field), None)


class ApplianceClient:
    def __init__(
        self,
        server: str,
        *,
        transport: Any = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ):
        self.server = server.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self._http = HTTPClient(self.server, transport=transport, timeout=timeout)
        self.last_headers = Headers()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApplianceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> Any:
        return self._answer(self._http.request("GET", f"{API}{path}"))

    def post(self, path: str, payload: Any) -> Any:
        return self._answer(
            self._http.request(
                "POST",
                f"{API}{path}",
                body=canonical_json(payload),
                headers={"Content-Type": "application/json"},
            )
        )

    def post_signed(
        self,
        path: str,
        payload: Any,
        agent_id: str,
        key: SigningKey,
        timeout: float | None = None,
    ) -> Any:
        body = canonical_json(payload)
        full_path = f"{API}{path}"
        timestamp = int(self.clock())
        nonce = secrets.token_urlsafe(18)
        message = request_signing_message("POST", full_path, timestamp, nonce, body, agent_id)
        headers = RequestSignature(agent_id, timestamp, nonce, key.sign(message).signature)
        return self._answer(
            self._http.request(
                "POST",
                full_path,
                body=body,
                headers={"Content-Type": "application/json", **headers.headers()},
                timeout=timeout if timeout is not None else self.timeout,
            )
        )

    def _answer(self, response: Response) -> Any:
        self.last_headers = response.headers
        try:
            payload = json.loads(response.body)
        except ValueError:  # not JSON, or not UTF-8
            payload = {"error": response.text[:200]}
        if response.status >= 400:
            retry = response.headers.get("Retry-After")
            shaped = isinstance(payload, dict)
            errors = payload.get("errors") if shaped else None
            raise ApplianceError(
                response.status,
                str(payload.get("error", "")) if shaped else "",
                float(retry) if retry and retry.isdigit() else None,
                [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else None,
            )
        return payload
