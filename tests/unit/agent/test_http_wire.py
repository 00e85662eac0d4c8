"""HTTP/1.1 messages as the agent writes and reads them, byte for byte."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.http_wire import (
    NoAnswer,
    NotHTTP,
    TooLarge,
    Truncated,
    body_lines,
    read_body,
    read_head,
    request_bytes,
)


def answer(raw: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(raw))


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    encoded = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    return encoded + b"0\r\n" + trailer + b"\r\n"


def test_a_request_has_its_host_headers_and_length() -> None:
    message = request_bytes("POST", "10.0.0.5:8080", "/api/v1/x?a=1", {"X-A": "b"}, b"{}")
    assert message == (
        b"POST /api/v1/x?a=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nX-A: b\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert b"Content-Length: 0" in request_bytes("POST", "h", "/", {}, b"")
    assert b"Content-Length" not in request_bytes("GET", "h", "/", {}, b"")


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/a b", {}),
        ("/a\r\nX-Evil: 1", {}),
        ("http://elsewhere/", {}),
        ("/", {"Authorization": "Bearer t\r\nX-Evil: 1"}),
        ("/", {"Bad Name": "x"}),
    ],
)
def test_a_target_or_header_that_would_break_the_message_is_refused(
    target: str, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        request_bytes("GET", "h", target, headers, b"")


def test_an_answer_by_content_length_keeps_the_connection() -> None:
    reader = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhelloNEXT")
    head = read_head(reader, "GET")
    assert (head.status, head.headers, head.reusable) == (
        200,
        [("Content-Length", "5"), ("X-A", "1")],
        True,
    )
    assert read_body(reader, head, 100) == b"hello"
    assert reader.read() == b"NEXT"  # nothing of the next answer was taken


def test_interim_answers_are_skipped_and_folded_headers_joined() -> None:
    reader = answer(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="x",\r\n'
        b'\tservice="y"\r\nContent-Length: 0\r\n\r\n'
    )
    head = read_head(reader, "GET")
    assert head.status == 401
    assert head.headers == [
        ("WWW-Authenticate", 'Bearer realm="x", service="y"'),
        ("Content-Length", "0"),
    ]


def test_an_answer_without_length_runs_until_close_and_ends_the_connection() -> None:
    reader = answer(b"HTTP/1.0 200 OK\r\n\r\nall of it")
    head = read_head(reader, "GET")
    assert not head.reusable
    assert read_body(reader, head, 100) == b"all of it"


def test_connection_close_and_http_1_0_end_the_connection() -> None:
    closing = read_head(
        answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), "GET"
    )
    old = read_head(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), "GET")
    kept = read_head(
        answer(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"), "GET"
    )
    assert (closing.reusable, old.reusable, kept.reusable) == (False, False, True)


def test_head_204_and_304_answers_have_no_body_whatever_they_say() -> None:
    for method, status in (("HEAD", 200), ("GET", 204), ("GET", 304)):
        reader = answer(f"HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n".encode())
        head = read_head(reader, method)
        assert read_body(reader, head, 100) == b"" and head.reusable


def test_chunks_and_trailers_are_read_to_the_end() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        b"hello ", b"world", trailer=b"X-Checksum: 1\r\n"
    )
    reader = answer(raw + b"NEXT")
    head = read_head(reader, "GET")
    assert read_body(reader, head, 100) == b"hello world"
    assert reader.read() == b"NEXT"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", NoAnswer),
        (b"SSH-2.0-OpenSSH_9.2\r\n", NotHTTP),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", Truncated),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", Truncated),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", NotHTTP),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", NotHTTP),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", NotHTTP),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", Truncated),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX", NotHTTP),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", TooLarge),
    ],
)
def test_what_is_not_a_whole_http_answer_says_so(raw: bytes, error: type[Exception]) -> None:
    reader = answer(raw)
    with pytest.raises(error):
        read_body(reader, read_head(reader, "GET"), 100)


def test_lines_are_cut_where_they_end_not_where_chunks_do() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        b'{"a":', b' 1}\r\n{"b": 2}\r', b"\n", b"last"
    )
    reader = answer(raw)
    assert list(body_lines(reader, read_head(reader, "GET"), 100)) == [
        b'{"a": 1}',
        b'{"b": 2}',
        b"last",
    ]


def test_a_line_longer_than_accepted_is_refused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"x" * 50, b"x" * 60)
    reader = answer(raw)
    with pytest.raises(TooLarge):
        list(body_lines(reader, read_head(reader, "GET"), 100))


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=300), max_size=20))
def test_any_body_in_any_chunks_reads_back_whole(body: bytes, cuts: list[int]) -> None:
    chunks, rest = [], body
    for cut in cuts:
        if rest:
            chunks.append(rest[:cut])
            rest = rest[cut:]
    if rest:
        chunks.append(rest)
    reader = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*chunks))
    head = read_head(reader, "GET")
    assert read_body(reader, head, 10_000) == body
    reader = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*chunks))
    lines = list(body_lines(reader, read_head(reader, "GET"), 10_000))
    expected = [line.rstrip(b"\r") for line in body.split(b"\n")]
    if not body or body.endswith(b"\n"):
        expected.pop()  # nothing after the last line end
    assert lines == expected
