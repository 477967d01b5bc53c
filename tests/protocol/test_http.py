"""Tests for the fast paths of trio_ws.protocol.http and .handshake.

The handshake parses a plain upgrade request (server) or a plain 101 (client)
itself and leaves everything else to h11, which it also uses to build the
request when anything in it is unusual. Each fast path must be invisible: the
same bytes give the same results, errors and answers as with h11 alone. These
tests compare the two on well-formed and malformed input, whole and split.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ws.protocol import handshake as handshake_module
from trio_ws.protocol.deflate import DeflateConfig
from trio_ws.protocol.handshake import ClientHandshake, ServerHandshake, accept_key
from trio_ws.protocol.http import (
    Headers,
    Response,
    head_may_follow,
    parse_switching_response,
    parse_upgrade_request,
    serialize_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

REQUEST = (
    b"GET /chat?x=1 HTTP/1.1\r\n"
    b"Host: example.com:8765\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n"
    b"\r\n"
)
FRAME = b"\x81\x05Hello"


# --- references: what h11 alone makes of some bytes ---------------------------


def h11_request(data: bytes, max_size: int = 16384) -> tuple[Any, ...]:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        return ("error", exc.error_status_hint)
    if event is h11.NEED_DATA:
        return ("need data",)
    assert isinstance(event, h11.Request)
    return (
        "request",
        event.method.decode("latin-1"),
        event.http_version,
        event.target.decode("latin-1"),
        Headers._from_wire(event.headers.raw_items()).items(),
        conn.trailing_data[0],
    )


def h11_response(data: bytes, max_size: int = 16384) -> tuple[Any, ...]:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x"), ("Upgrade", "ws")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        return ("error", exc.error_status_hint)
    if event is h11.NEED_DATA:
        return ("need data",)
    assert isinstance(event, h11.InformationalResponse | h11.Response)
    return (
        "response",
        event.status_code,
        event.http_version,
        event.reason.decode("latin-1"),
        Headers._from_wire(event.headers.raw_items()).items(),
        conn.trailing_data[0] if event.status_code == 101 else None,
    )


def fast_request(data: bytes) -> tuple[Any, ...] | None:
    parsed = parse_upgrade_request(data)
    if parsed is None:
        return None
    target, headers, length = parsed
    return ("request", "GET", b"1.1", target, headers.items(), data[length:])


def fast_response(data: bytes) -> tuple[Any, ...] | None:
    parsed = parse_switching_response(data)
    if parsed is None:
        return None
    response, length = parsed
    items = response.headers.items()
    return ("response", 101, b"1.1", response.reason_phrase, items, data[length:])


# --- inputs: plain heads, and heads with something odd in them -------------------

# Bytes that are special somewhere in HTTP/1.1 syntax.
ODD = st.sampled_from(
    [
        *[b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x01", b"\x7f", b"\x80"],
        *[b"\xff", b":", b",", b";", b"=", b'"', b"\x0b", b"\x0c", b"/", b"\xe9", b"\r\n "],
        b"\r\n\t",
    ]
)
NAMES = st.sampled_from(
    [
        *["Host", "host", "HOST", "Upgrade", "Connection", "Sec-WebSocket-Key"],
        *["Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"],
        *["Content-Length", "Transfer-Encoding", "content-length", "X-Custom", "Expect"],
        *["Sec-WebSocket-Accept", "Origin", "Cookie", "X_Under", "Bad Name", "Bad:Name", ""],
    ]
)
VALUES = st.sampled_from(
    [
        *["websocket", "Upgrade", "keep-alive, Upgrade", KEY, ACCEPT, "13", "0", "5", "chunked"],
        *["gzip", "", "  padded  ", "a\tb", "100-continue", "caf\xe9", "x" * 40, "chat, super"],
    ]
)


@st.composite
def heads(draw: st.DrawFn, start_lines: list[bytes]) -> bytes:
    """A head built from plausible parts, some of them odd, and odd bytes
    put anywhere."""
    start = draw(st.sampled_from(start_lines))
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=9))
    lines = [start] + [f"{name}: {value}".encode("latin-1") for name, value in fields]
    separator = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    data = b"".join(line + separator for line in lines) + separator
    data += draw(st.sampled_from([b"", FRAME, b"\r\n", b"GET / HTTP/1.1\r\n\r\n"]))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 2))
        data = data[:position] + draw(ODD) + data[position + cut :]
    return data


REQUEST_LINES = [
    b"GET /chat HTTP/1.1",
    b"GET /a?b=c&d=%20 HTTP/1.1",
    b"GET http://example.com/ HTTP/1.1",
    b"GET * HTTP/1.1",
    b"GET / HTTP/1.0",
    b"GET / HTTP/2.0",
    b"get / HTTP/1.1",
    b"POST / HTTP/1.1",
    b"HEAD / HTTP/1.1",
    b" GET / HTTP/1.1",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/1.1 ",
    b"GET /\xe9 HTTP/1.1",
]
STATUS_LINES = [
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 101",
    b"HTTP/1.1 101 ",
    b"HTTP/1.1 101 \xc9a va",
    b"HTTP/1.1 101 Tab\there",
    b"HTTP/1.0 101 Switching Protocols",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 1010 Odd",
    b"HTTP/1.1 101Switching",
    b"HTTP/2 101 Switching Protocols",
]


# --- the parsers ----------------------------------------------------------------


def test_a_plain_upgrade_request_takes_the_fast_path() -> None:
    fast = fast_request(REQUEST + FRAME)
    assert fast is not None
    assert fast == h11_request(REQUEST + FRAME)
    assert fast[3] == "/chat?x=1"
    assert fast[5] == FRAME


def test_a_plain_101_takes_the_fast_path() -> None:
    fast = fast_response(RESPONSE + FRAME)
    assert fast is not None
    assert fast == h11_response(RESPONSE + FRAME)


@pytest.mark.parametrize(
    "data",
    [
        REQUEST[:-2],  # incomplete
        REQUEST.replace(b"GET", b"POST"),
        REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"),
        REQUEST.replace(b"Host: example.com:8765\r\n", b""),
        REQUEST.replace(b"\r\n\r\n", b"\r\nHost: again\r\n\r\n"),
        REQUEST.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
        REQUEST.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
        REQUEST.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\n  folded\r\n"),
        REQUEST.replace(b"Upgrade: websocket", b"Upgrade: web\x01socket"),
        REQUEST.replace(b"\r\n", b"\n"),
        b"GET / HTTP/1.1\r\nHost: x\n\nX: y\r\n\r\n",  # h11 stops at the bare blank line
    ],
)
def test_the_fast_request_parser_leaves_the_unusual_to_h11(data: bytes) -> None:
    assert parse_upgrade_request(data) is None


@pytest.mark.parametrize(
    "data",
    [
        RESPONSE[:-2],
        RESPONSE.replace(b"101", b"200"),
        RESPONSE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        RESPONSE.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
        RESPONSE.replace(b"Switching", b"Switch\x01ing"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + RESPONSE,
    ],
)
def test_the_fast_response_parser_leaves_the_unusual_to_h11(data: bytes) -> None:
    assert parse_switching_response(data) is None


@given(data=heads(REQUEST_LINES))
@example(data=REQUEST)
@example(data=b"GET / HTTP/1.1\r\nHost: a\r\nX: \xe9\xff\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nHost: a\r\nX:\t\r\n\r\n")
def test_whatever_the_fast_request_parser_reads_h11_reads_the_same(data: bytes) -> None:
    fast = fast_request(data)
    if fast is not None:
        assert fast == h11_request(data)


@given(data=heads(STATUS_LINES))
@example(data=RESPONSE)
@example(data=b"HTTP/1.1 101\r\nX: \xe9\r\n\r\n")
def test_whatever_the_fast_response_parser_reads_h11_reads_the_same(data: bytes) -> None:
    fast = fast_response(data)
    if fast is not None:
        assert fast == h11_response(data)


@given(data=st.one_of(heads(REQUEST_LINES), st.binary(min_size=1, max_size=200)))
@example(data=b"GET / HTTP/1.1\r\n")
@example(data=b" GET")
@example(data=b"GET / HTTP/1.1\r\nHost: x\n\n")
def test_a_head_may_follow_only_where_h11_would_wait(data: bytes) -> None:
    for end in range(1, len(data) + 1):
        for max_size in (8, 16384):
            if head_may_follow(data[:end], max_size):
                assert h11_request(data[:end], max_size) == ("need data",)
                assert h11_response(data[:end], max_size) == ("need data",)


@given(data=heads(REQUEST_LINES))
def test_the_fast_request_parser_reads_well_formed_heads(data: bytes) -> None:
    # Not a tautology: the fast path must actually serve ordinary requests.
    reference = h11_request(data)
    if (
        reference[0] == "request"
        and reference[1:3] == ("GET", b"1.1")
        and b"\r\n\r\n" in data
        and b"\n" not in data.partition(b"\r\n\r\n")[0].replace(b"\r\n", b"")
        and all(
            0x20 <= byte < 0x7F or byte >= 0x80 or byte == 0x09
            for byte in data.partition(b"\r\n\r\n")[0].replace(b"\r\n", b"")
        )
        and not any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in reference[4]
        )
        and not any(line[:1] in (b" ", b"\t") for line in data.split(b"\r\n")[1:])
    ):
        assert fast_request(data) == reference


# --- whole handshakes: fast paths on and off ---------------------------------------------


@contextmanager
def h11_only() -> Iterator[None]:
    """Turn the fast parsers off: every head goes to h11 from its first byte."""
    with (
        mock.patch.object(handshake_module, "parse_upgrade_request", return_value=None),
        mock.patch.object(handshake_module, "parse_switching_response", return_value=None),
        mock.patch.object(handshake_module, "head_may_follow", return_value=False),
    ):
        yield


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def describe_response(response: Response | None) -> object:
    if response is None:
        return None
    return (response.status_code, response.reason_phrase, response.headers.items(), response.body)


def server_outcome(chunks: list[bytes], *, eof: bool, max_header_size: int) -> object:
    server = ServerHandshake(max_header_size=max_header_size)
    for chunk in chunks:
        server.receive_data(chunk)
    if eof:
        server.receive_eof()
    request = server.request
    outcome: list[object] = [
        None if request is None else (request.method, request.path, request.headers.items()),
        type(server.error),
        str(server.error),
        describe_response(server.error_response),
        server.client_subprotocols,
        server.trailing_data,
    ]
    if server.error is None and request is not None:
        server.send_response(server.accept(subprotocol=None, compression=DeflateConfig()))
        outcome += [server.data_to_send(), server.extension is not None]
    elif server.error_response is not None:
        server.send_response(server.error_response)
        outcome.append(server.data_to_send())
    return outcome


def client_outcome(chunks: list[bytes], *, eof: bool, max_header_size: int) -> object:
    client = ClientHandshake(
        "example.com",
        "/chat",
        key=KEY,
        subprotocols=["chat"],
        compression=DeflateConfig(),
        max_header_size=max_header_size,
    )
    request = client.data_to_send()
    for chunk in chunks:
        client.receive_data(chunk)
    if eof:
        client.receive_eof()
    return [
        request,
        client.complete,
        client.accepted,
        type(client.error),
        str(client.error),
        describe_response(client.response),
        client.subprotocol,
        client.extension is not None,
        client.trailing_data,
    ]


SERVER_INPUTS = st.one_of(
    heads(REQUEST_LINES).map(lambda head: head.replace(b"Host: ", b"Host: h\r\nX: ", 1)),
    heads(REQUEST_LINES),
    st.just(REQUEST + FRAME),
    st.binary(max_size=300),
)


@given(
    data=SERVER_INPUTS,
    cuts=st.lists(st.integers(0, 400), max_size=4),
    eof=st.booleans(),
    max_header_size=st.sampled_from([16384, 150, 40]),
)
@example(data=REQUEST + FRAME, cuts=[], eof=False, max_header_size=16384)
@example(data=REQUEST + FRAME, cuts=[10, 100], eof=True, max_header_size=16384)
@example(data=REQUEST, cuts=[], eof=False, max_header_size=100)
@example(data=REQUEST, cuts=[50, 90], eof=False, max_header_size=100)
def test_the_server_answers_the_same_with_or_without_its_fast_path(
    data: bytes, cuts: list[int], eof: bool, max_header_size: int
) -> None:
    chunks = chunked(data, cuts)
    fast = server_outcome(chunks, eof=eof, max_header_size=max_header_size)
    with h11_only():
        slow = server_outcome(chunks, eof=eof, max_header_size=max_header_size)
    assert fast == slow


def with_accept(head: bytes) -> bytes:
    return head.replace(KEY.encode(), ACCEPT.encode())


CLIENT_INPUTS = st.one_of(
    heads(STATUS_LINES).map(with_accept),
    st.just(RESPONSE + FRAME),
    st.just(
        RESPONSE.replace(
            b"\r\n\r\n",
            b"\r\nSec-WebSocket-Protocol: chat\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        )
    ),
    st.just(b"HTTP/1.1 100 Continue\r\n\r\n" + RESPONSE + FRAME),
    st.just(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"),
    st.binary(max_size=300),
)


@given(
    data=CLIENT_INPUTS,
    cuts=st.lists(st.integers(0, 300), max_size=4),
    eof=st.booleans(),
    max_header_size=st.sampled_from([16384, 100, 30]),
)
@example(data=RESPONSE + FRAME, cuts=[], eof=False, max_header_size=16384)
@example(data=RESPONSE + FRAME, cuts=[7, 60], eof=True, max_header_size=16384)
@example(data=RESPONSE, cuts=[40], eof=False, max_header_size=30)
def test_the_client_reads_the_same_with_or_without_its_fast_path(
    data: bytes, cuts: list[int], eof: bool, max_header_size: int
) -> None:
    chunks = chunked(data, cuts)
    fast = client_outcome(chunks, eof=eof, max_header_size=max_header_size)
    with h11_only():
        slow = client_outcome(chunks, eof=eof, max_header_size=max_header_size)
    assert fast == slow


def test_the_fast_paths_run_for_plain_heads() -> None:
    server = ServerHandshake()
    server.receive_data(REQUEST)
    assert server._conn is None  # h11 never saw it
    assert server.error is None
    client = ClientHandshake("example.com", "/chat", key=KEY, compression=None)
    assert client._conn is None
    client.receive_data(RESPONSE + FRAME)
    assert client._conn is None
    assert client.accepted
    assert client.trailing_data == FRAME


# --- building the request without h11 ---------------------------------------------------


def h11_serialized(client: ClientHandshake) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    request = client.request
    event = h11.Request(
        method="GET", target=request.path.encode(), headers=request.headers.raw_items()
    )
    data = conn.send(event)
    assert data is not None
    return data


HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=12,
)


@given(
    host=st.sampled_from(["example.com", "127.0.0.1:8765", "[::1]:80", ""]),
    resource=st.sampled_from(["/", "/chat?room=1", "/a%20b", "/~x/*"]),
    origin=st.none() | HEADER_VALUES,
    subprotocols=st.lists(st.sampled_from(["chat", "v2.json", "x-y"]), max_size=3),
    compression=st.sampled_from([None, DeflateConfig()]),
    user_agent=st.sampled_from([None, handshake_module.USER_AGENT, "agent/1.0", " odd\tone "]),
    additional=st.lists(
        st.tuples(st.sampled_from(["X-A", "Cookie", "authorization", "Expect"]), HEADER_VALUES),
        max_size=3,
    ),
)
def test_the_request_is_what_h11_would_write(
    host: str,
    resource: str,
    origin: str | None,
    subprotocols: list[str],
    compression: DeflateConfig | None,
    user_agent: str | None,
    additional: list[tuple[str, str]],
) -> None:
    client = ClientHandshake(
        host,
        resource,
        key=KEY,
        origin=origin,
        subprotocols=subprotocols,
        compression=compression,
        user_agent=user_agent,
        additional_headers=additional,
    )
    assert client._conn is None  # built without h11...
    assert client.data_to_send() == h11_serialized(client)  # ...as h11 would


@pytest.mark.parametrize(
    ("additional", "match"),
    [
        ([("Host", "other")], "multiple Host"),
        ([("Content-Length", "x")], "Content-Length"),
        ([("Transfer-Encoding", "gzip")], "Transfer-Encoding"),
    ],
)
def test_h11_still_refuses_requests_it_cannot_send(
    additional: list[tuple[str, str]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ClientHandshake("h", "/", additional_headers=additional)


def test_a_request_with_framing_fields_still_reads_its_101_through_h11() -> None:
    client = ClientHandshake(
        "h", "/", key=KEY, compression=None, additional_headers=[("Content-Length", "0")]
    )
    assert client._conn is not None
    assert b"Content-Length: 0\r\n" in client.data_to_send()
    client.receive_data(RESPONSE + FRAME)
    assert client.accepted
    assert client.trailing_data == FRAME


# --- serializing responses ----------------------------------------------------------------


def test_accept_answers_with_the_rfc_example() -> None:
    server = ServerHandshake()
    server.receive_data(REQUEST)
    server.send_response(server.accept(compression=None, server_header=None))
    assert server.data_to_send() == RESPONSE
    assert accept_key(KEY) == ACCEPT


@given(
    status=st.sampled_from([101, 200, 204, 304, 401, 404, 500]),
    fields=st.lists(
        st.tuples(
            st.sampled_from(["X-A", "Connection", "Content-Type", "Transfer-Encoding"]),
            HEADER_VALUES,
        ),
        max_size=3,
    ),
    body=st.sampled_from([b"", b"body"]),
    head=st.booleans(),
)
def test_responses_serialize_as_h11_reads_them(
    status: int, fields: list[tuple[str, str]], body: bytes, head: bool
) -> None:
    if status in (101, 204, 304):
        body = b""
    headers = Headers(fields)
    before = headers.items()
    response = Response(status, "Reason", headers, body)
    data = serialize_response(response, head=head)
    assert headers.items() == before  # the caller's headers are left alone
    conn = h11.Connection(h11.CLIENT)
    method = "HEAD" if head else "GET"
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x"), ("Upgrade", "a")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        # A caller's Transfer-Encoding can be anything; h11 reads chunked only.
        assert any(name == "Transfer-Encoding" for name, _ in fields)
        return
    assert isinstance(event, h11.InformationalResponse | h11.Response)
    assert event.status_code == status
    expected = Headers(fields)
    if status not in (101, 204, 304) and "Transfer-Encoding" not in expected:
        expected.add("Content-Length", str(len(body)))
    if status != 101 and "Connection" not in expected:
        expected.add("Connection", "close")
    assert Headers._from_wire(event.headers.raw_items()).items() == expected.items()
    if head or status == 101:
        assert data.endswith(b"\r\n\r\n")
    else:
        assert data.endswith(b"\r\n\r\n" + body)
