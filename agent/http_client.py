"""HTTP for the agent on the standard library: a request in, (status, headers, body) out.

One `HTTPClient` keeps one idle keep-alive connection per origin: `http://`, `https://`
(verified against the system's CA store) or `unix://` (the Docker Engine's socket);
agent/http_wire.py writes and reads the messages. What goes wrong becomes one
`HTTPFailure` whose message is a line people can act on. A test may pass an httpx
transport instead, so that it can watch or change the traffic.
"""

from __future__ import annotations

import base64
import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlencode, urljoin, urlsplit

from agent import http_wire
from kernel.logs import log_event

logger = logging.getLogger("redflag.agent.http")

DEFAULT_MAX_BODY = 32 * 1024 * 1024  # an answer larger than this is refused, not read
MAX_LINE = 1024 * 1024  # one line of a streamed answer (`on_line`)
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class HTTPFailure(OSError):
    """The request got no complete answer; the message says why in one line."""


class ConnectFailed(HTTPFailure):
    """No connection: refused, unknown host, no socket, no route."""


class NameNotResolved(ConnectFailed):
    """The host name in the URL does not resolve (DNS)."""


class NotAURL(ConnectFailed):
    """What should be an http(s) URL is not one."""


class TimedOut(HTTPFailure):
    """Connecting, or waiting for the answer, took longer than the timeout."""


class TLSFailed(HTTPFailure):
    """The TLS handshake failed, e.g. a certificate this host does not trust."""


class CertificateNotTrusted(TLSFailed):
    """The server's certificate does not chain to a CA this host trusts (self-signed,
    a private CA not installed here, expired)."""


class CertificateNameMismatch(TLSFailed):
    """The server's certificate is trusted but issued for another name or address."""


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH_CODES = (62, 64)


class AnswerBroken(HTTPFailure):
    """The connection closed before the answer was complete, or it was not HTTP."""


class AnswerTooLarge(HTTPFailure):
    """The answer's body is larger than the caller accepts."""


class Headers(dict):  # type: ignore[type-arg]
    """Answer headers by lower-case name; `get` ignores case, repeated ones are joined."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        super().__init__()
        for name, value in pairs:
            key = name.lower()
            joined = f"{super().__getitem__(key)}, {value}" if key in self else value
            super().__setitem__(key, joined)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Origin(NamedTuple):
    scheme: str  # http, https, unix
    host: str  # the socket's path for unix
    port: int

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Request:
    method: str
    origin: Origin
    path: str  # what goes on the request line: /path?query
    headers: Mapping[str, str]
    body: bytes
    timeout: float

    @property
    def url(self) -> str:
        return f"{self.origin}{self.path}"


class HTTPClient:
    """Requests to paths under `base_url`, or to absolute http(s) URLs; `base_url` may
    be `unix:///var/run/docker.sock`.

    `timeout` covers connecting and each wait for data, so a held request needs a
    `timeout` longer than the hold. `transport`: what sends the requests; by default
    the standard library's connections, in tests an httpx transport."""

    def __init__(
        self,
        base_url: str = "",
        *,
        timeout: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        follow_redirects: bool = False,
        transport: Any = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_body = max_body
        self.follow_redirects = follow_redirects
        self._base: tuple[Origin, str] | None = None
        if base_url:
            parts = urlsplit(self.base_url)
            self._base = (
                (Origin("unix", parts.netloc + parts.path, 0), "")
                if parts.scheme == "unix"
                else (origin_of(self.base_url), parts.path)
            )
        if transport is None:
            self._transport: Any = Connections()
        elif hasattr(transport, "handle_request"):
            self._transport = HttpxTransport(transport)
        else:
            self._transport = transport

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        params: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        max_body: int | None = None,
        on_line: Callable[[bytes], None] | None = None,
    ) -> Response:
        """Send one request and read its answer. With `on_line`, a successful (2xx)
        answer's body is handed over line by line as it arrives, and not kept."""
        headers = dict(headers or {})
        if auth is not None:
            pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        origin, path = self._target(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = Request(method.upper(), origin, path, headers, body, timeout or self.timeout)
            began = time.monotonic()
            answer = self._transport.send(request, max_body or self.max_body, on_line)
            if logger.isEnabledFor(logging.DEBUG):
                seconds = round(time.monotonic() - began, 3)
                log_event(
                    logger,
                    logging.DEBUG,
                    "agent.http_request",
                    f"{request.method} {request.url} {answer.status}",
                    status=answer.status,
                    seconds=seconds,
                )
            location = answer.headers.get("Location")
            if not (self.follow_redirects and answer.status in _REDIRECTS and location):
                return answer
            origin, path = self._target(urljoin(request.url, location))
            if answer.status == 303:
                method, body = "GET", b""
            if origin != request.origin:
                headers.pop("Authorization", None)  # credentials stay with their origin
        raise AnswerBroken(f"more than {MAX_REDIRECTS} redirects from {url[:200]}")

    def _target(self, url: str) -> tuple[Origin, str]:
        """(origin, request path) of an absolute http(s) URL or of a path under base."""
        if url.startswith(("http://", "https://")):
            origin, parts = origin_of(url), urlsplit(url)
        elif self._base is None:
            raise ValueError(f"a path ({url[:80]!r}) needs a base URL")
        else:
            origin, parts = self._base[0], urlsplit(f"{self._base[1]}{url}")
        return origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def origin_of(url: str) -> Origin:
    """Scheme, host and port of an http(s) URL; ConnectFailed for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotAURL(f"{url[:200]!r} is not a URL: write http://HOST:PORT or https://HOST")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise NotAURL(f"not a valid port in {parts.netloc[:200]!r}") from None
    return Origin(parts.scheme, parts.hostname, port)


# --- connections over the standard library's sockets -------------------------------


class _Connection:
    """One socket to one origin, and the buffered reader of what comes back."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class _Unanswered(AnswerBroken):
    """The connection ended before any answer: safe to send once more."""


class Connections:
    """The default transport: one idle keep-alive connection kept per origin. A request
    made while that one is busy (another thread) opens one of its own."""

    def __init__(self) -> None:
        self._idle: dict[Origin, _Connection] = {}
        self._lock = threading.Lock()
        self._tls: Any = None
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = list(self._idle.values()), {}, True
        for connection in idle:
            connection.close()

    def send(
        self, request: Request, max_body: int, on_line: Callable[[bytes], None] | None
    ) -> Response:
        message = http_wire.request_bytes(
            request.method,
            _host_header(request.origin),
            request.path,
            request.headers,
            request.body,
        )
        connection, reused = self._connection(request)
        try:
            try:
                head = _talk(request, _exchange, connection, message, request.method)
            except _Unanswered:
                # A kept-alive connection the server closed while it idled gives no
                # answer at all: once more on a new one. Such a server did not read the
                # request; were it done twice after all, the appliance refuses a signed
                # request it has seen (same nonce) and takes events once by UUID.
                if not reused:
                    raise
                connection.close()
                connection = self._connect(request)
                head = _talk(request, _exchange, connection, message, request.method)
            if on_line is not None and 200 <= head.status < 300:
                lines = http_wire.body_lines(connection.reader, head, MAX_LINE)
                while (line := _talk(request, next, lines, None)) is not None:
                    on_line(line)
                body = b""
            else:
                body = _talk(request, http_wire.read_body, connection.reader, head, max_body)
        except BaseException:
            connection.close()
            raise
        if head.reusable:
            self._give_back(request.origin, connection)
        else:
            connection.close()
        return Response(head.status, Headers(head.headers), body)

    def _connection(self, request: Request) -> tuple[_Connection, bool]:
        """The idle connection to the origin if the server has not closed it, else a
        new one; and whether it was kept alive from an earlier request."""
        with self._lock:
            connection = self._idle.pop(request.origin, None)
        if connection is not None:
            if not _closed_by_peer(connection.sock):
                connection.sock.settimeout(request.timeout)
                return connection, True
            connection.close()
        return self._connect(request), False

    def _connect(self, request: Request) -> _Connection:
        origin, timeout = request.origin, request.timeout
        sock = None
        try:
            if origin.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(origin.host)
            else:
                sock = socket.create_connection((origin.host, origin.port), timeout)
                if origin.scheme == "https":
                    sock = self._tls_context().wrap_socket(sock, server_hostname=origin.host)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise _failure(exc, request, connected=False) from exc
        return _Connection(sock)

    def _tls_context(self) -> Any:
        if self._tls is None:
            import ssl  # only agents of an https appliance (or registry) pay for it

            self._tls = ssl.create_default_context()
        return self._tls

    def _give_back(self, origin: Origin, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and origin not in self._idle:
                self._idle[origin] = connection
                return
        connection.close()


def _host_header(origin: Origin) -> str:
    if origin.scheme == "unix":
        return "localhost"
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    default = 443 if origin.scheme == "https" else 80
    return host if origin.port == default else f"{host}:{origin.port}"


def _exchange(connection: _Connection, message: bytes, method: str) -> http_wire.Head:
    connection.sock.sendall(message)
    return http_wire.read_head(connection.reader, method)


def _talk(request: Request, step: Callable[..., Any], *args: Any) -> Any:
    """Run one step of talking to the server; what fails becomes an HTTPFailure."""
    origin = request.origin
    try:
        return step(*args)
    except http_wire.NoAnswer:
        raise _Unanswered(f"{origin} closed the connection before answering") from None
    except http_wire.Truncated:
        raise AnswerBroken(f"{origin} closed the connection in the middle of its answer") from None
    except http_wire.NotHTTP as exc:
        raise AnswerBroken(f"{origin} did not answer in HTTP: {exc}"[:300]) from None
    except http_wire.TooLarge as exc:
        raise AnswerTooLarge(str(exc)) from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise _Unanswered(f"{origin} closed the connection before answering") from exc
    except OSError as exc:
        raise _failure(exc, request, connected=True) from exc


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle connection has nothing to read: if it has, the server closed it (or
    sent something unasked), and it cannot carry a request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _failure(exc: OSError, request: Request, connected: bool) -> HTTPFailure:
    """The one-line reason for what the socket (or TLS) raised."""
    origin, timeout = request.origin, request.timeout
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "certificate verify failed"
        if exc.verify_code in _NAME_MISMATCH_CODES:
            return CertificateNameMismatch(
                f"TLS certificate of {origin} is not for that name: {reason.rstrip('. ')}"
            )
        return CertificateNotTrusted(f"TLS certificate of {origin} not trusted: {reason}")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return TLSFailed(f"TLS with {origin} failed: {exc.reason or exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if connected:
            return TimedOut(f"no answer from {origin} within {timeout:g} s")
        return TimedOut(f"could not connect to {origin} within {timeout:g} s")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"connection refused by {origin}")
    if isinstance(exc, socket.gaierror):
        return NameNotResolved(f"cannot resolve {origin.host}: {exc.strerror or exc}")
    if isinstance(exc, FileNotFoundError) and origin.scheme == "unix":
        return ConnectFailed(f"no socket at {origin.host}")
    if isinstance(exc, PermissionError) and origin.scheme == "unix":
        return ConnectFailed(f"no permission to use the socket {origin.host}")
    if not connected:
        return ConnectFailed(f"cannot connect to {origin}: {exc.strerror or exc}")
    return AnswerBroken(f"connection to {origin} failed: {exc.strerror or exc}"[:300])


# --- an httpx transport, for tests that watch or change the traffic -------------------


class HttpxTransport:
    """Sends through an httpx transport (e.g. a subclass of httpx.HTTPTransport that
    records or alters answers). httpx is imported only when one is given."""

    def __init__(self, transport: Any):
        self.transport = transport

    def close(self) -> None:
        self.transport.close()

    def send(
        self, request: Request, max_body: int, on_line: Callable[[bytes], None] | None
    ) -> Response:
        import httpx

        if request.origin.scheme == "unix":
            raise ConnectFailed("an httpx transport cannot reach a unix socket")
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=dict(request.headers),
            content=request.body,
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), request.timeout)
            },
        )
        try:
            answer = self.transport.handle_request(outgoing)
            try:
                body = answer.read()
            finally:
                answer.close()
        except httpx.TimeoutException as exc:
            raise TimedOut(f"no answer from {request.origin} within {request.timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise ConnectFailed(f"cannot connect to {request.origin}: {exc}") from exc
        except httpx.TransportError as exc:
            raise AnswerBroken(f"connection to {request.origin} failed: {exc}") from exc
        if len(body) > max_body:
            raise AnswerTooLarge(f"the answer is more than {max_body} bytes")
        if on_line is not None and 200 <= answer.status_code < 300:
            for line in body.splitlines():
                on_line(line)
            body = b""
        return Response(answer.status_code, Headers(answer.headers.multi_items()), body)
