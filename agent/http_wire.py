"""HTTP/1.1 messages on one connection (RFC 9112), as much as the agent needs: write a
request, read an answer's head, then its body by Content-Length, in chunks, or until
the server closes. agent/http_client.py sends with it.

Not http.client: that module imports the email package and ssl, which stay in an idle
agent's memory for good (about 3 MB of it; issue 14). ssl is imported only for https.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

MAX_HEAD_LINE = 64 * 1024
MAX_HEADERS = 100
READ_SIZE = 64 * 1024
# What http.client refuses in a request target and in header fields (no injection).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_FIELD = re.compile(r"[\x00\r\n]")
_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
MAX_INTERIM = 10  # 1xx answers before the real one


class NoAnswer(Exception):
    """The connection ended before the first byte of an answer."""


class Truncated(Exception):
    """The connection ended in the middle of the answer."""


class NotHTTP(Exception):
    """What came back does not read as HTTP/1.x; the message says where."""


class TooLarge(Exception):
    """More than the caller accepts."""


@dataclass(frozen=True)
class Head:
    status: int
    headers: list[tuple[str, str]]
    reusable: bool  # the connection may carry another request after this body
    length: int | None  # Content-Length; None with chunked or read-until-close
    chunked: bool
    has_body: bool


def request_bytes(
    method: str, host: str, target: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The request as it goes on the wire. ValueError for a target or a header that
    would break the message (a newline in a token from elsewhere, say)."""
    if _BAD_TARGET.search(target) or not target.startswith("/"):
        raise ValueError(f"not a valid request target: {target[:200]!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = {name.lower() for name in headers}
    for name, value in headers.items():
        if not _NAME.match(name) or _BAD_FIELD.search(value):
            raise ValueError(f"not a valid header: {name[:80]!r}")
        lines.append(f"{name}: {value}")
    if "content-length" not in given and (body or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_head(reader: BinaryIO, method: str) -> Head:
    """The status line and headers of the final answer (interim 1xx ones skipped)."""
    for interim in range(MAX_INTERIM + 1):
        line = reader.readline(MAX_HEAD_LINE + 1)
        if not line:
            if interim:
                raise Truncated()
            raise NoAnswer()
        version, status = _status_line(line)
        headers = _header_fields(reader)
        if not 100 <= status < 200:
            break
    else:
        raise NotHTTP(f"more than {MAX_INTERIM} interim answers")
    fields = {name.lower(): value for name, value in headers}
    tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    has_body = method != "HEAD" and status not in (204, 304)
    chunked = has_body and fields.get("transfer-encoding", "").lower().endswith("chunked")
    length = None
    if has_body and not chunked and "content-length" in fields:
        values = {v.strip() for v in fields["content-length"].split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise NotHTTP(f"Content-Length {fields['content-length'][:40]!r}")
        length = int(values.pop())
    until_close = has_body and not chunked and length is None
    return Head(status, headers, keep_alive and not until_close, length, chunked, has_body)


def body_pieces(reader: BinaryIO, head: Head) -> Iterator[bytes]:
    """The body as it arrives, piece by piece, ending exactly where it ends."""
    if not head.has_body:
        return
    if head.chunked:
        yield from _chunks(reader)
    elif head.length is not None:
        left = head.length
        while left:
            piece = reader.read1(min(left, READ_SIZE))
            if not piece:
                raise Truncated()
            left -= len(piece)
            yield piece
    else:
        while piece := reader.read1(READ_SIZE):
            yield piece


def read_body(reader: BinaryIO, head: Head, limit: int) -> bytes:
    if head.length is not None and head.length > limit:
        raise TooLarge(f"the answer is {head.length} bytes, more than {limit} accepted")
    body = bytearray()
    for piece in body_pieces(reader, head):
        body += piece
        if len(body) > limit:
            raise TooLarge(f"the answer is more than {limit} bytes")
    return bytes(body)


def body_lines(reader: BinaryIO, head: Head, limit: int) -> Iterator[bytes]:
    """The body line by line (without the line end), each at most `limit` bytes."""
    pending = b""
    for piece in body_pieces(reader, head):
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
        if len(pending) > limit:
            raise TooLarge(f"a line of the answer is longer than {limit} bytes")
    if pending:
        yield pending.rstrip(b"\r")


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
    if (
        len(parts) < 2
        or parts[0] not in ("HTTP/1.1", "HTTP/1.0")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        raise NotHTTP(f"status line {line[:60]!r}")
    return parts[0], int(parts[1])


def _header_fields(reader: BinaryIO) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = reader.readline(MAX_HEAD_LINE + 1)
        if not line:
            raise Truncated()
        if len(line) > MAX_HEAD_LINE:
            raise NotHTTP("a header line longer than 64 KiB")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return headers
        if text[0] in " \t" and headers:  # an obsolete folded line continues the last
            headers[-1] = (headers[-1][0], f"{headers[-1][1]} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not _NAME.match(name):
            raise NotHTTP(f"header line {text[:60]!r}")
        headers.append((name, value.strip()))
        if len(headers) > MAX_HEADERS:
            raise NotHTTP(f"more than {MAX_HEADERS} headers")


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    while True:
        line = reader.readline(MAX_HEAD_LINE + 1)
        if not line:
            raise Truncated()
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.match(size_text):
            raise NotHTTP(f"chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            _header_fields(reader)  # trailer fields, not used
            return
        left = size
        while left:
            piece = reader.read1(min(left, READ_SIZE))
            if not piece:
                raise Truncated()
            left -= len(piece)
            yield piece
        if reader.readline(3) not in (b"\r\n", b"\n"):
            raise NotHTTP("a chunk does not end with CRLF")
