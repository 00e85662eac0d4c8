"""A TCP proxy on loopback that drops and stalls connections at random while told to."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time


class ChaosProxy:
    """Forwards 127.0.0.1:<port> to a target port. While `chaos` is on, each chunk
    in either direction may end the connection (so a request may be processed but its
    answer lost) and each new connection may stall until the client gives up."""

    def __init__(self, target_port: int, *, seed: int = 1, drop: float = 0.15, stall: float = 0.1):
        self.target_port = target_port
        self.rng = random.Random(seed)
        self.drop = drop
        self.stall = stall
        self.chaos = False
        self.dropped = 0
        self.stalled = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closing.set()
        self._accepter.join(timeout=5)
        self._server.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        if self.chaos and self.rng.random() < self.stall:
            self.stalled += 1
            # Hold the connection open, answer nothing, until the client gives up.
            client.settimeout(0.2)
            deadline = time.monotonic() + 30
            while not self._closing.is_set() and time.monotonic() < deadline:
                try:
                    if not client.recv(65536):
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        pumps = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join(timeout=60)
        for sock in (client, upstream):
            sock.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.5)
        deadline = time.monotonic() + 60
        while not self._closing.is_set() and time.monotonic() < deadline:
            try:
                chunk = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            if self.chaos and self.rng.random() < self.drop:
                self.dropped += 1
                break
            try:
                sink.sendall(chunk)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
