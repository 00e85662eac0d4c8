"""The agent's HTTP client against real servers on loopback and on a unix socket:
keep-alive, held answers, timeouts, refusals, TLS, chunked and oversized answers."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.http_client import (
    AnswerBroken,
    AnswerTooLarge,
    ConnectFailed,
    HTTPClient,
    TimedOut,
    TLSFailed,
)
from tests.fakes.docker_engine import FakeDockerEngine

Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.served = getattr(self, "served", 0) + 1  # requests on this connection
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), body))
        self.server.routes[self.path.split("?")[0]](self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        self.connections += 1
        return super().get_request()


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    """Start a loopback server with {path: handler} routes; stopped after the test."""
    servers: list[_Server] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> _Server:
        server = _Server(routes)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def url(server: _Server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def send(status: int, body: bytes, **headers: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return route


def chunked(*chunks: bytes) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for chunk in chunks:
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")

    return route


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- answers ----------------------------------------------------------------------------


def test_a_request_gets_status_headers_and_body(serve: Callable[..., _Server]) -> None:
    server = serve({"/api/v1/x": send(201, b'{"ok": true}', Content_Type="application/json")})
    with HTTPClient(url(server)) as client:
        answer = client.request(
            "POST", "/api/v1/x", body=b'{"a": 1}', headers={"X-Test": "yes"}, params={"q": "1 2"}
        )
    assert answer.status == 201
    assert json.loads(answer.body) == {"ok": True}
    assert answer.headers.get("content-type") == answer.headers["Content-Type"]
    method, path, headers, body = server.seen[0]
    assert (method, path, body) == ("POST", "/api/v1/x?q=1+2", b'{"a": 1}')
    assert headers["X-Test"] == "yes"


def test_a_base_url_with_a_path_prefixes_every_request(serve: Callable[..., _Server]) -> None:
    server = serve({"/redflag/api/v1/trust": send(200, b"{}")})
    with HTTPClient(url(server) + "/redflag/") as client:
        assert client.request("GET", "/api/v1/trust").status == 200


def test_one_connection_is_kept_alive_across_requests(serve: Callable[..., _Server]) -> None:
    server = serve({"/a": send(200, b"a"), "/b": send(200, b"b")})
    with HTTPClient(url(server)) as client:
        bodies = [client.request("GET", path).body for path in ("/a", "/b", "/a")]
    assert bodies == [b"a", b"b", b"a"]
    assert server.connections == 1


def test_a_kept_alive_connection_dropped_without_an_answer_is_tried_once_more(
    serve: Callable[..., _Server],
) -> None:
    def second_on_a_connection_is_dropped(handler: BaseHTTPRequestHandler) -> None:
        if handler.served > 1:  # type: ignore[attr-defined]
            handler.close_connection = True  # hangs up: no status line at all
            return
        send(200, b"flaky")(handler)

    def gone(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True

    server = serve(
        {"/a": send(200, b"a"), "/flaky": second_on_a_connection_is_dropped, "/gone": gone}
    )
    with HTTPClient(url(server)) as client:
        assert client.request("GET", "/a").body == b"a"
        assert client.request("POST", "/flaky", body=b"{}").body == b"flaky"
        assert server.connections == 2
        # Dropped again on the new connection: that is the answer, no third try.
        with pytest.raises(AnswerBroken) as dropped:
            client.request("POST", "/gone", body=b"{}")
    assert str(dropped.value) == f"{url(server)} closed the connection before answering"
    assert [path for _, path, _, _ in server.seen].count("/gone") == 2


def test_an_idle_connection_closed_by_the_server_is_not_used_again(
    serve: Callable[..., _Server],
) -> None:
    def close_after(handler: BaseHTTPRequestHandler) -> None:
        send(200, b"bye")(handler)
        handler.wfile.flush()
        handler.close_connection = True  # closes without saying "Connection: close"

    server = serve({"/bye": close_after, "/a": send(200, b"a")})
    with HTTPClient(url(server)) as client:
        client.request("GET", "/bye")
        time.sleep(0.1)  # the server's FIN arrives
        assert client.request("GET", "/a").body == b"a"
    assert server.connections == 2


def test_chunked_answers_are_joined(serve: Callable[..., _Server]) -> None:
    server = serve({"/c": chunked(b"hello ", b"chunked ", b"world")})
    with HTTPClient(url(server)) as client:
        assert client.request("GET", "/c").body == b"hello chunked world"
        assert client.request("GET", "/c").body == b"hello chunked world"
    assert server.connections == 1


def test_an_answer_larger_than_accepted_is_refused_unread(serve: Callable[..., _Server]) -> None:
    server = serve({"/big": send(200, b"x" * 5000), "/chunks": chunked(b"y" * 3000, b"y" * 3000)})
    with HTTPClient(url(server), max_body=4096) as client:
        with pytest.raises(AnswerTooLarge, match="5000 bytes, more than 4096"):
            client.request("GET", "/big")
        with pytest.raises(AnswerTooLarge, match="more than 4096 bytes"):
            client.request("GET", "/chunks")
        assert client.request("GET", "/big", max_body=5000).body == b"x" * 5000


def test_redirects_are_followed_only_when_asked_and_credentials_stay_home(
    serve: Callable[..., _Server],
) -> None:
    elsewhere = serve({"/blob": send(200, b"blob")})
    home = serve({"/v2/x": send(307, b"", Location=f"{url(elsewhere)}/blob")})
    with HTTPClient() as client:
        assert client.request("GET", f"{url(home)}/v2/x").status == 307
    with HTTPClient(follow_redirects=True) as client:
        answer = client.request("GET", f"{url(home)}/v2/x", auth=("alice", "s3cret"))
    assert answer.body == b"blob"
    assert "Authorization" in home.seen[-1][2]
    assert "Authorization" not in elsewhere.seen[-1][2]


def test_at_debug_level_every_request_is_logged_with_its_status(
    serve: Callable[..., _Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve({"/api/v1/trust": send(200, b"{}")})
    with HTTPClient(url(server)) as client:
        client.request("GET", "/api/v1/trust")
        with caplog.at_level(logging.DEBUG, logger="redflag.agent.http"):
            client.request("GET", "/api/v1/trust")
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "agent.http_request"]
    assert record.getMessage() == f"GET {url(server)}/api/v1/trust 200"
    assert record.fields["status"] == 200  # type: ignore[attr-defined]


# --- waiting: held answers and timeouts -------------------------------------------------


def test_an_answer_held_shorter_than_the_timeout_arrives(serve: Callable[..., _Server]) -> None:
    def held(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)  # the appliance holds a check-in open until a command arrives
        send(200, b"command")(handler)

    server = serve({"/held": held})
    with HTTPClient(url(server), timeout=0.3) as client:
        began = time.monotonic()
        assert client.request("GET", "/held", timeout=3).body == b"command"
    assert 1.0 <= time.monotonic() - began < 3


def test_a_server_that_does_not_answer_times_out_with_a_clear_message(
    serve: Callable[..., _Server],
) -> None:
    release = threading.Event()

    def silent(handler: BaseHTTPRequestHandler) -> None:
        release.wait(10)

    server = serve({"/silent": silent})
    with HTTPClient(url(server), timeout=0.3) as client:
        began = time.monotonic()
        with pytest.raises(TimedOut) as timed_out:
            client.request("GET", "/silent")
    release.set()
    assert time.monotonic() - began < 2
    assert str(timed_out.value) == f"no answer from {url(server)} within 0.3 s"


def test_a_closed_port_is_a_refused_connection(serve: Callable[..., _Server]) -> None:
    port = closed_port()
    with HTTPClient(f"http://127.0.0.1:{port}") as client, pytest.raises(ConnectFailed) as refused:
        client.request("GET", "/healthz")
    assert str(refused.value) == f"connection refused by http://127.0.0.1:{port}"
    assert isinstance(refused.value, OSError)  # the drain and the daemon back off on OSError


def test_an_unknown_host_says_so() -> None:
    with HTTPClient("http://redflag.invalid:8080") as client, pytest.raises(ConnectFailed) as e:
        client.request("GET", "/healthz")
    assert str(e.value).startswith("cannot resolve redflag.invalid: ")


def test_a_server_that_hangs_up_mid_answer_is_a_broken_answer(
    serve: Callable[..., _Server],
) -> None:
    def truncated(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b"only part")
        handler.close_connection = True

    server = serve({"/cut": truncated})
    with HTTPClient(url(server)) as client, pytest.raises(AnswerBroken, match="middle"):
        client.request("GET", "/cut")


def test_a_url_that_is_not_http_is_refused_before_connecting() -> None:
    with pytest.raises(ConnectFailed, match="is not a URL: write http://HOST:PORT"):
        HTTPClient("ftp://example.test")
    with pytest.raises(ConnectFailed, match=r"'redflag\.lan:8080' is not a URL"):
        HTTPClient("redflag.lan:8080")


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_a_certificate_this_host_does_not_trust_is_a_tls_failure(
    serve: Callable[..., _Server], self_signed: tuple[Path, Path]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    server = serve({"/healthz": send(200, b"ok")}, tls=context)
    with HTTPClient(url(server, "https")) as client, pytest.raises(TLSFailed) as refused:
        client.request("GET", "/healthz")
    assert str(refused.value).startswith(f"TLS certificate of {url(server, 'https')} not trusted")
    assert "\n" not in str(refused.value)


def test_a_certificate_in_ssl_cert_file_is_trusted(
    serve: Callable[..., _Server], self_signed: tuple[Path, Path]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    server = serve({"/healthz": send(200, b"ok")}, tls=context)
    # A fresh process, as an operator would start the agent with SSL_CERT_FILE set.
    code = (
        "from agent.http_client import HTTPClient\n"
        f"print(HTTPClient({url(server, 'https')!r}).request('GET', '/healthz').body)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SSL_CERT_FILE": str(self_signed[0]), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.stdout.strip() == "b'ok'", done.stderr


# --- the Docker Engine's unix socket --------------------------------------------------


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    directory = Path(tempfile.mkdtemp(prefix="rf-http-"))  # AF_UNIX paths are short
    with FakeDockerEngine(directory / "engine.sock") as running:
        yield running
    shutil.rmtree(directory, ignore_errors=True)


def test_the_engine_answers_over_its_unix_socket(engine: FakeDockerEngine) -> None:
    with HTTPClient(engine.base_url) as client:
        assert client.request("GET", "/_ping").body == b"OK"
        version = json.loads(client.request("GET", "/version").body)
    assert version["ApiVersion"] == "1.45"
    assert [path for _, path, _ in engine.requests] == ["/_ping", "/version"]


def test_a_streamed_chunked_answer_arrives_line_by_line(engine: FakeDockerEngine) -> None:
    engine.serve_on_pull("nginx:1.27", "sha256:" + "1" * 64)
    lines: list[dict[str, Any]] = []
    with HTTPClient(engine.base_url) as client:
        answer = client.request(
            "POST",
            "/v1.45/images/create",
            params={"fromImage": "nginx", "tag": "1.27"},
            on_line=lambda line: lines.append(json.loads(line)),
        )
    assert answer.status == 200 and answer.body == b""
    assert lines[0] == {"status": "Pulling from nginx", "id": "1.27"}
    assert lines[-1]["status"] == "Status: Downloaded newer image for nginx:1.27"


def test_an_error_answer_is_not_streamed(engine: FakeDockerEngine) -> None:
    lines: list[bytes] = []
    with HTTPClient(engine.base_url) as client:
        answer = client.request(
            "POST", "/images/create", params={"fromImage": "absent"}, on_line=lines.append
        )
    assert answer.status == 404 and lines == []
    assert "not found" in json.loads(answer.body)["message"]


def test_a_missing_socket_is_a_clear_connect_failure(tmp_path: Path) -> None:
    with HTTPClient(f"unix://{tmp_path}/absent.sock") as client, pytest.raises(ConnectFailed) as e:
        client.request("GET", "/_ping")
    assert str(e.value) == f"no socket at {tmp_path}/absent.sock"
