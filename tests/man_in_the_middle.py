"""A man in the middle on loopback for release and installer tests: an HTTP server that
passes requests on to the appliance and may change what comes back."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Middle:
    """An HTTP server on loopback that passes requests on to the appliance, and may
    change what comes back: `rewrite[path_suffix](body) -> body`, or `stream` a
    target's answer itself (endless, or one byte a second)."""

    upstream: str
    rewrite: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    stream: Callable[[Any], None] | None = None
    requests: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Middle:
        middle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                middle.requests.append(self.path)
                if middle.stream is not None and "/tuf/targets/" in self.path:
                    middle.stream(self)
                    return
                answer = httpx.get(middle.upstream + self.path, timeout=10)
                body = answer.content
                for suffix, change in middle.rewrite.items():
                    if self.path.endswith(suffix) and answer.status_code == 200:
                        body = change(body)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
