"""Tests for trio_ws.protocol.handshake: the RFC 6455 §4 opening handshake.

Client and server talk to each other through a pump where they can; failures
are provoked with hand-written HTTP so each check is exercised on its own.
"""

from __future__ import annotations

import base64
import itertools

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ws.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidStatus,
    NegotiationError,
    ProtocolError,
)
from trio_ws.protocol.deflate import DeflateConfig, PerMessageDeflate
from trio_ws.protocol.handshake import (
    SERVER,
    USER_AGENT,
    ClientHandshake,
    Headers,
    Request,
    Response,
    ServerHandshake,
    accept_key,
    generate_key,
    make_response,
    select_subprotocol,
)

# RFC 6455 §1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE_HEADERS: list[tuple[str, str]] = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]

SWITCH_HEADERS: list[tuple[str, str]] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Accept", ACCEPT),
]

# A masked text frame "Hello" (RFC 6455 §5.7) and an unmasked one.
CLIENT_FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
SERVER_FRAME = b"\x81\x05Hello"


def http_message(
    start_line: str,
    headers: list[tuple[str, str]],
    *,
    drop: tuple[str, ...] = (),
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    """Build an HTTP head by hand, leaving out the fields named in ``drop``."""
    lowered = {name.lower() for name in drop}
    fields = [(n, v) for n, v in headers if n.lower() not in lowered] + (extra or [])
    head = start_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return head.encode("latin-1") + body


def upgrade_request(
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "1.1",
    drop: tuple[str, ...] = (),
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    return http_message(
        f"{method} {target} HTTP/{version}", UPGRADE_HEADERS, drop=drop, extra=extra
    )


def switch_response(
    *, drop: tuple[str, ...] = (), extra: list[tuple[str, str]] | None = None
) -> bytes:
    return http_message("HTTP/1.1 101 Switching Protocols", SWITCH_HEADERS, drop=drop, extra=extra)


def server_receiving(data: bytes, **kwargs: int) -> ServerHandshake:
    server = ServerHandshake(**kwargs)
    server.receive_data(data)
    return server


def client_receiving(data: bytes, **kwargs: object) -> ClientHandshake:
    """A client with the RFC's key (and no compression unless asked) fed ``data``."""
    kwargs.setdefault("compression", None)
    client = ClientHandshake("example.com", "/chat", key=KEY, **kwargs)  # type: ignore[arg-type]  # test shorthand
    client.data_to_send()
    client.receive_data(data)
    return client


def connect(
    client: ClientHandshake,
    *,
    server: ServerHandshake | None = None,
    select: list[str] | None = None,
    **accept_kwargs: object,
) -> tuple[ClientHandshake, ServerHandshake]:
    """Run a whole handshake between ``client`` and a server; return both."""
    if server is None:
        server = ServerHandshake()
    server.receive_data(client.data_to_send())
    assert server.error is None, server.error
    subprotocol = select_subprotocol(server.client_subprotocols, select or [])
    response = server.accept(subprotocol=subprotocol, **accept_kwargs)  # type: ignore[arg-type]  # test shorthand
    server.send_response(response)
    client.receive_data(server.data_to_send())
    return client, server


def parse_response(data: bytes) -> tuple[h11.Response, bytes]:
    """Parse bytes a server wrote with an independent HTTP client (h11)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    head = conn.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage)
            return head, body


# --- keys ------------------------------------------------------------------


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_generate_key_is_16_fresh_random_bytes() -> None:
    keys = {generate_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


# --- Headers ---------------------------------------------------------------


def test_headers_lookup_ignores_case_and_returns_first_value() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("Host", "x"), ("set-cookie", "b=2")])
    assert headers["SET-COOKIE"] == "a=1"
    assert headers.get_all("set-Cookie") == ["a=1", "b=2"]
    assert headers.get("host") == "x"
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert headers.get_all("missing") == []
    assert "HOST" in headers
    assert "missing" not in headers
    assert 42 not in headers
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_keep_order_and_case_and_iterate_distinct_names() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("Host", "x"), ("set-cookie", "b=2")])
    assert headers.items() == [("Set-Cookie", "a=1"), ("Host", "x"), ("set-cookie", "b=2")]
    assert list(headers) == ["Set-Cookie", "Host"]
    assert headers.keys() == ["Set-Cookie", "Host"]
    assert len(headers) == 2
    assert dict(headers) == {"Set-Cookie": "a=1", "Host": "x"}
    assert headers.raw_items() == [
        (b"Set-Cookie", b"a=1"),
        (b"Host", b"x"),
        (b"set-cookie", b"b=2"),
    ]


def test_headers_accept_mapping_pairs_or_headers() -> None:
    from_mapping = Headers({"A": "1", "B": "2"})
    assert from_mapping.items() == [("A", "1"), ("B", "2")]
    copy = Headers(from_mapping)
    copy.add("C", "3")
    assert "C" not in from_mapping
    other = from_mapping.copy()
    other["A"] = "changed"
    assert from_mapping["A"] == "1"
    assert Headers().items() == []


def test_headers_add_and_setitem_and_delitem() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
    headers.add("b", "5")
    assert headers.get_all("B") == ["2", "5"]
    # Replacing keeps the position of the first field and drops the others.
    headers["A"] = "new"
    assert headers.items() == [("A", "new"), ("B", "2"), ("C", "4"), ("b", "5")]
    headers["D"] = "6"
    assert headers.items()[-1] == ("D", "6")
    del headers["b"]
    assert headers.items() == [("A", "new"), ("C", "4"), ("D", "6")]
    with pytest.raises(KeyError):
        del headers["b"]


def test_headers_equality_is_http_equality() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("B", "3")])
    assert headers == Headers([("b", "2"), ("a", "1"), ("B", "3")])
    assert headers != Headers([("A", "1"), ("B", "3"), ("B", "2")])
    assert headers != Headers([("A", "1")])
    assert headers != [("A", "1"), ("B", "2"), ("B", "3")]


def test_headers_repr_shows_items() -> None:
    assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


@pytest.mark.parametrize(
    "value", ["a\r\nInjected: yes", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x1bb"]
)
def test_headers_refuse_control_characters_in_values(value: str) -> None:
    """CR, LF and NUL would let a value smuggle in headers of its own."""
    with pytest.raises(ValueError, match="control character"):
        Headers().add("X-Test", value)
    with pytest.raises(ValueError, match="control character"):
        Headers()["X-Test"] = value
    with pytest.raises(ValueError, match="control character"):
        Headers([("X-Test", value)])


@pytest.mark.parametrize("name", ["", "Bad Name", "Bad:Name", "Bad\r\nName", "Ünï"])
def test_headers_refuse_names_that_are_not_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers().add(name, "x")


def test_headers_refuse_values_that_are_not_latin_1() -> None:
    with pytest.raises(ValueError, match="ISO-8859-1"):
        Headers().add("X-Test", "€")
    assert Headers([("X-Test", "café")]).raw_items() == [(b"X-Test", "café".encode("latin-1"))]


def test_headers_strip_surrounding_whitespace_and_allow_tabs_inside() -> None:
    headers = Headers([("X-Test", " \ta\tb ")])
    assert headers["X-Test"] == "a\tb"


# --- Request and Response --------------------------------------------------


def test_request_splits_path_into_resource_and_query() -> None:
    request = Request("/chat?room=1&x=2", Headers([("Host", "example.com:8080")]))
    assert request.resource == "/chat"
    assert request.query == "room=1&x=2"
    assert request.host == "example.com:8080"
    bare = Request("/", Headers())
    assert (bare.resource, bare.query, bare.host) == ("/", "", None)


def test_request_cookies_are_parsed_leniently() -> None:
    headers = Headers(
        [
            ("Cookie", 'session=abc123; theme="dark \\"mode\\""; broken; =nameless'),
            ("Cookie", 'path=/x; session=ignored; spaced = v a l ;json={"a":1}'),
        ]
    )
    assert Request("/", headers).cookies == {
        "session": "abc123",
        "theme": 'dark "mode"',
        "path": "/x",
        "spaced": "v a l",
        "json": '{"a":1}',
    }
    assert Request("/", Headers()).cookies == {}


@given(st.text(alphabet=st.sampled_from('ab"\\;= \t0,\x80é'), max_size=40))
def test_cookies_never_raise_on_arbitrary_cookie_headers(value: str) -> None:
    headers = Headers([("Cookie", value)])
    cookies = Request("/", headers).cookies
    assert all(name and "=" not in name and ";" not in name for name in cookies)


def test_make_response_sets_length_type_and_reason() -> None:
    response = make_response(
        401, "Unauthorized: bad token ✗\n", headers={"WWW-Authenticate": "Bearer"}
    )
    assert response.status_code == 401
    assert response.reason_phrase == "Unauthorized"
    assert response.body == "Unauthorized: bad token ✗\n".encode()
    assert response.headers == Headers(
        [
            ("WWW-Authenticate", "Bearer"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(response.body))),
        ]
    )


def test_make_response_respects_caller_content_type_and_none() -> None:
    json = make_response(200, b"{}", headers=[("Content-Type", "application/json")])
    assert json.headers.get_all("Content-Type") == ["application/json"]
    untyped = make_response(200, b"raw", content_type=None)
    assert "Content-Type" not in untyped.headers
    empty = make_response(403)
    assert empty.headers.items() == [("Content-Length", "0")]


def test_make_response_handles_bodyless_and_unknown_statuses() -> None:
    no_content = make_response(204)
    assert no_content.headers.items() == []
    assert no_content.reason_phrase == "No Content"
    assert make_response(299).reason_phrase == ""
    with pytest.raises(ValueError, match="no body"):
        make_response(304, "body")
    for status in (101, 199, 600):
        with pytest.raises(ValueError, match="cannot make"):
            make_response(status)


# --- a client and a server together ----------------------------------------


def test_client_and_server_complete_a_handshake() -> None:
    client = ClientHandshake("example.com:8080", "/chat?room=1", key=KEY)
    request = client.data_to_send()
    assert client.data_to_send() == b""
    assert request.startswith(b"GET /chat?room=1 HTTP/1.1\r\n")
    client, server = connect(ClientHandshake("example.com:8080", "/chat?room=1", key=KEY))

    assert server.request == client.request
    assert server.request is not None
    assert server.request.headers.items() == [
        ("Host", "example.com:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("User-Agent", USER_AGENT),
    ]
    assert server.request.resource == "/chat"
    assert server.error is None
    assert server.error_response is None
    assert server.data_to_send() == b""

    assert client.complete
    assert client.accepted
    assert client.error is None
    assert client.response is not None
    assert client.response.status_code == 101
    assert client.response.headers.items() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Server", SERVER),
    ]
    assert client.subprotocol is None
    assert server.subprotocol is None
    assert client.trailing_data == b""
    assert server.trailing_data == b""


def test_user_agent_and_defaults_mention_the_library() -> None:
    assert USER_AGENT.startswith("trio_ws/")
    assert " Python/3." in USER_AGENT
    assert SERVER.startswith("trio_ws/")


def test_optional_request_headers_and_additional_headers() -> None:
    client = ClientHandshake(
        "[::1]:9000",
        "/",
        origin="https://example.com",
        compression=None,
        user_agent=None,
        additional_headers={"Authorization": "Bearer token", "Cookie": "a=1"},
    )
    client, server = connect(
        client, server_header=None, additional_headers=[("Set-Cookie", "b=2"), ("X-A", "1")]
    )
    assert server.request is not None
    headers = server.request.headers
    assert headers["Host"] == "[::1]:9000"
    assert headers["Origin"] == "https://example.com"
    assert headers["Authorization"] == "Bearer token"
    assert server.request.cookies == {"a": "1"}
    assert "User-Agent" not in headers
    assert "Sec-WebSocket-Extensions" not in headers
    assert client.accepted
    assert client.response is not None
    assert "Server" not in client.response.headers
    assert client.response.headers.items()[-2:] == [("Set-Cookie", "b=2"), ("X-A", "1")]


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["chat.v2", "chat.v1"], ["chat.v1", "chat.v2"], "chat.v1"),
        (["chat.v2", "chat.v1"], ["chat.v2"], "chat.v2"),
        (["chat.v1"], ["other"], None),
        ([], ["chat.v1"], None),
    ],
)
def test_subprotocol_negotiation(
    offered: list[str], supported: list[str], chosen: str | None
) -> None:
    client, server = connect(ClientHandshake("h", "/", subprotocols=offered), select=supported)
    assert server.client_subprotocols == offered
    assert client.accepted
    assert client.subprotocol == server.subprotocol == chosen
    assert client.response is not None
    assert client.response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_select_subprotocol_prefers_server_order() -> None:
    assert select_subprotocol(["a", "b", "c"], ["c", "b"]) == "c"
    assert select_subprotocol(["a"], ["b"]) is None
    assert select_subprotocol([], []) is None


def test_server_parses_subprotocols_across_lines_and_commas() -> None:
    server = server_receiving(
        upgrade_request(
            extra=[("Sec-WebSocket-Protocol", "a, ,b"), ("sec-websocket-protocol", " c ")]
        )
    )
    assert server.client_subprotocols == ["a", "b", "c"]


def test_compression_is_negotiated_when_both_sides_want_it() -> None:
    config = DeflateConfig(server_no_context_takeover=True, client_max_window_bits=10)
    client, server = connect(ClientHandshake("h", "/", compression=config))
    assert isinstance(client.extension, PerMessageDeflate)
    assert isinstance(server.extension, PerMessageDeflate)
    assert client.extension.is_client
    assert not server.extension.is_client
    assert client.extension.server_no_context_takeover
    assert server.extension.server_no_context_takeover
    assert client.extension.client_max_window_bits == 10


def test_compression_is_off_when_either_side_declines() -> None:
    client, server = connect(ClientHandshake("h", "/", compression=None))
    assert client.extension is None
    assert server.extension is None
    client, server = connect(ClientHandshake("h", "/"), compression=None)
    assert client.accepted
    assert client.extension is None
    assert server.extension is None
    assert client.response is not None
    assert "Sec-WebSocket-Extensions" not in client.response.headers


def test_server_declines_offers_it_cannot_honour() -> None:
    """RFC 7692 §5.1: decline, don't refuse."""
    server = server_receiving(
        upgrade_request(
            extra=[("Sec-WebSocket-Extensions", "x-other, permessage-deflate; bogus=1")]
        )
    )
    assert server.error is None
    response = server.accept()
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert server.extension is None


def test_blank_extension_lines_are_ignored() -> None:
    server = server_receiving(upgrade_request(extra=[("Sec-WebSocket-Extensions", "")]))
    assert server.error is None
    server.send_response(server.accept())
    assert server.extension is None
    client = client_receiving(switch_response(extra=[("Sec-WebSocket-Extensions", "")]))
    assert client.accepted
    assert client.extension is None


def test_pipelined_first_frame_reaches_trailing_data_on_both_sides() -> None:
    client = ClientHandshake("h", "/")
    server = ServerHandshake()
    server.receive_data(client.data_to_send() + CLIENT_FRAME[:4])
    assert server.trailing_data == CLIENT_FRAME[:4]
    server.receive_data(CLIENT_FRAME[4:])
    assert server.trailing_data == CLIENT_FRAME
    server.send_response(server.accept())
    client.receive_data(server.data_to_send() + SERVER_FRAME[:3])
    assert client.accepted
    assert client.trailing_data == SERVER_FRAME[:3]
    client.receive_data(SERVER_FRAME[3:])
    assert client.trailing_data == SERVER_FRAME


def test_handshake_fed_one_byte_at_a_time() -> None:
    client = ClientHandshake("h", "/", subprotocols=["p"])
    server = ServerHandshake()
    request = client.data_to_send() + CLIENT_FRAME
    for i in range(len(request)):
        server.receive_data(request[i : i + 1])
    assert server.error is None
    assert server.trailing_data == CLIENT_FRAME
    server.send_response(server.accept(subprotocol="p"))
    response = server.data_to_send() + SERVER_FRAME
    for i in range(len(response)):
        assert not client.complete or client.accepted
        client.receive_data(response[i : i + 1])
    assert client.accepted
    assert client.subprotocol == "p"
    assert client.extension is not None
    assert client.trailing_data == SERVER_FRAME


def test_empty_reads_are_not_eof() -> None:
    server = ServerHandshake()
    server.receive_data(b"")
    assert server.error is None
    client = client_receiving(b"")
    assert not client.complete


def test_eof_after_the_head_is_left_to_the_frame_machine() -> None:
    client, server = connect(ClientHandshake("h", "/"))
    server.receive_eof()
    assert server.error is None
    client.receive_eof()
    assert client.accepted
    assert client.error is None


# --- server-side failures --------------------------------------------------


def expect_rejection(server: ServerHandshake, status: int, message: str) -> Response:
    """Check the error and its response, and that the response is valid HTTP."""
    assert server.error is not None
    assert str(server.error) == message
    response = server.error_response
    assert response is not None
    assert response.status_code == status
    assert response.body.startswith(f"Failed to open a WebSocket connection: {message}.\n".encode())
    assert "close" in response.headers["Connection"]
    with pytest.raises(ProtocolError):
        server.accept()
    server.send_response(response)
    head, body = parse_response(server.data_to_send())
    assert head.status_code == status
    assert body == response.body
    return response


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        pytest.param(
            upgrade_request(drop=("Connection",)),
            400,
            "missing Connection header",
            id="no-connection",
        ),
        pytest.param(
            upgrade_request(drop=("Connection",), extra=[("Connection", "keep-alive")]),
            400,
            "invalid Connection header: keep-alive (expected 'upgrade')",
            id="connection-keep-alive",
        ),
        pytest.param(
            upgrade_request(drop=("Sec-WebSocket-Key",)),
            400,
            "missing Sec-WebSocket-Key header",
            id="no-key",
        ),
        pytest.param(
            upgrade_request(extra=[("Sec-WebSocket-Key", KEY)]),
            400,
            f"invalid Sec-WebSocket-Key header: {KEY}, {KEY} (more than one)",
            id="two-keys",
        ),
        pytest.param(
            upgrade_request(drop=("Sec-WebSocket-Key",), extra=[("Sec-WebSocket-Key", "c2hvcnQ=")]),
            400,
            "invalid Sec-WebSocket-Key header: c2hvcnQ= (expected 16 bytes in base64)",
            id="short-key",
        ),
        pytest.param(
            upgrade_request(
                drop=("Sec-WebSocket-Key",), extra=[("Sec-WebSocket-Key", "not base64 at all!!!!")]
            ),
            400,
            "invalid Sec-WebSocket-Key header: not base64 at all!!!! (expected 16 bytes in base64)",
            id="garbage-key",
        ),
        pytest.param(
            upgrade_request(drop=("Sec-WebSocket-Key",))[:-2]
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=é\r\n\r\n".encode("latin-1"),
            400,
            "invalid Sec-WebSocket-Key header: dGhlIHNhbXBsZSBub25jZQ=é "
            "(expected 16 bytes in base64)",
            id="non-ascii-key",
        ),
        pytest.param(
            upgrade_request(drop=("Sec-WebSocket-Version",)),
            400,
            "missing Sec-WebSocket-Version header",
            id="no-version",
        ),
        pytest.param(
            upgrade_request(version="1.0"),
            400,
            "HTTP/1.0 request; WebSocket needs HTTP/1.1",
            id="http-1.0",
        ),
        pytest.param(
            upgrade_request(version="2.0"),
            505,
            "unsupported HTTP version 2.0",
            id="http-2.0",
        ),
        pytest.param(
            upgrade_request(version="1.2", drop=("Host",)),
            400,
            "missing Host header",
            id="http-1.2-no-host",
        ),
        pytest.param(
            upgrade_request(drop=("Host",)),
            400,
            "invalid HTTP request: Missing mandatory Host: header",
            id="http-1.1-no-host",
        ),
        pytest.param(
            upgrade_request(extra=[("Content-Length", "5")]) + b"hello",
            400,
            "the upgrade request has a body",
            id="content-length",
        ),
        pytest.param(
            upgrade_request(extra=[("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n",
            400,
            "the upgrade request has a body",
            id="chunked",
        ),
        pytest.param(
            upgrade_request(extra=[("Transfer-Encoding", "gzip")]),
            501,
            "invalid HTTP request: Only Transfer-Encoding: chunked is supported",
            id="unknown-coding",
        ),
        pytest.param(
            upgrade_request(extra=[("Sec-WebSocket-Extensions", "permessage-deflate; =")]),
            400,
            "invalid Sec-WebSocket-Extensions header: permessage-deflate; = "
            "(expected a parameter name at 20, found '=')",
            id="malformed-extensions",
        ),
        pytest.param(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            400,
            "invalid HTTP request: illegal request line",
            id="tls-client-hello",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            400,
            "invalid HTTP request: illegal header line: bytearray(b'Bad Header')",
            id="bad-header-line",
        ),
    ],
)
def test_server_refuses_invalid_requests_with_400_family(
    request_bytes: bytes, status: int, message: str
) -> None:
    expect_rejection(server_receiving(request_bytes), status, message)


def test_error_response_body_reads_like_a_sentence() -> None:
    server = server_receiving(upgrade_request(drop=("Sec-WebSocket-Key",)))
    assert server.request is not None
    assert server.error_response is not None
    assert server.error_response.body == (
        b"Failed to open a WebSocket connection: missing Sec-WebSocket-Key header.\n"
    )
    assert server.error_response.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        (("Upgrade", "Connection"), [], "missing Upgrade header"),
        (("Upgrade",), [("Upgrade", "h2c")], "invalid Upgrade header: h2c (expected 'websocket')"),
    ],
)
def test_server_answers_a_plain_http_request_with_426_upgrade(
    drop: tuple[str, ...], extra: list[tuple[str, str]], message: str
) -> None:
    """A browser opening a WebSocket URL learns which protocol to upgrade to."""
    server = server_receiving(upgrade_request(drop=drop, extra=extra))
    response = expect_rejection(server, 426, message)
    assert response.headers["Upgrade"] == "websocket"
    # RFC 9110 §7.8: Upgrade travels with Connection: upgrade.
    assert response.headers["Connection"] == "Upgrade, close"
    assert b"use a WebSocket client" in response.body


@pytest.mark.parametrize("versions", [["8"], ["13, 8"], ["13", "13"], [""]])
def test_server_answers_another_version_with_426_and_its_version(versions: list[str]) -> None:
    server = server_receiving(
        upgrade_request(
            drop=("Sec-WebSocket-Version",),
            extra=[("Sec-WebSocket-Version", v) for v in versions],
        )
    )
    response = server.error_response
    assert isinstance(server.error, InvalidHeader)
    assert server.error.name == "Sec-WebSocket-Version"
    assert response is not None
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"
    assert response.headers["Upgrade"] == "websocket"
    assert b"only version 13 is supported" in response.body
    assert b"use a WebSocket client" not in response.body


def test_server_answers_another_method_with_405_allow_get() -> None:
    server = server_receiving(upgrade_request(method="POST"))
    response = expect_rejection(server, 405, "unsupported HTTP method POST; expected GET")
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize(
    "connection", ["keep-alive, Upgrade", "upgrade", "UPGRADE,keep-alive", "keep-alive,,upgrade"]
)
def test_server_accepts_connection_token_lists(connection: str) -> None:
    server = server_receiving(
        upgrade_request(drop=("Connection",), extra=[("Connection", connection)])
    )
    assert server.error is None


def test_server_accepts_tokens_spread_over_several_lines() -> None:
    server = server_receiving(
        upgrade_request(
            drop=("Connection", "Upgrade"),
            extra=[
                ("Connection", "keep-alive"),
                ("connection", "Upgrade"),
                ("Upgrade", "h2c"),
                ("UPGRADE", "WebSocket"),
            ],
        )
    )
    assert server.error is None


def test_zero_content_length_is_no_body() -> None:
    server = server_receiving(upgrade_request(extra=[("Content-Length", "00")]) + CLIENT_FRAME)
    assert server.error is None
    assert server.trailing_data == CLIENT_FRAME


def test_health_check_without_upgrade_still_exposes_the_request() -> None:
    """A process_request hook can answer a plain GET on the WebSocket port."""
    server = server_receiving(b"GET /healthz HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert server.request is not None
    assert server.request.path == "/healthz"
    assert server.error is not None
    server.send_response(make_response(200, "OK\n"))
    head, body = parse_response(server.data_to_send())
    assert head.status_code == 200
    assert body == b"OK\n"
    assert (b"connection", b"close") in list(head.headers)


def test_oversized_head_is_refused_with_431_without_buffering_it() -> None:
    server = ServerHandshake(max_header_size=1024)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(40):
        server.receive_data(b"X-Padding: " + b"a" * 50 + b"\r\n")
    assert server.request is None
    expect_rejection(server, 431, "request head larger than 1024 bytes")
    # Nothing more is buffered or parsed.
    server.receive_data(b"a" * 10_000)
    assert server.trailing_data == b""


def test_oversized_head_arriving_whole_is_refused_too() -> None:
    """The limit does not depend on how reads happen to be split."""
    big = upgrade_request(extra=[("X-Padding", "a" * 2000)])
    server = server_receiving(big, max_header_size=1024)
    assert server.request is not None
    expect_rejection(server, 431, "request head larger than 1024 bytes")
    assert server_receiving(big, max_header_size=len(big)).error is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "connection closed before the client sent a request"),
        (b"GET /chat HTTP/1.1\r\nHost:", "connection closed before the request was complete"),
    ],
)
def test_eof_before_the_request_is_an_error_without_response(data: bytes, message: str) -> None:
    server = server_receiving(data)
    server.receive_eof()
    assert isinstance(server.error, InvalidHandshake)
    assert str(server.error) == message
    assert server.error_response is None
    assert server.request is None
    server.receive_eof()
    assert str(server.error) == message


def test_server_ignores_data_after_an_error() -> None:
    server = server_receiving(upgrade_request(drop=("Sec-WebSocket-Key",)) + b"more")
    server.receive_data(b"and more")
    assert server.trailing_data == b""


# --- server API misuse -----------------------------------------------------


def test_accept_needs_a_valid_request_and_happens_once() -> None:
    server = ServerHandshake()
    with pytest.raises(ProtocolError, match="no valid WebSocket upgrade request"):
        server.accept()
    server.receive_data(upgrade_request(extra=[("Sec-WebSocket-Protocol", "a")]))
    with pytest.raises(ValueError, match="did not offer subprotocol 'b'"):
        server.accept(subprotocol="b")
    response = server.accept(subprotocol="a")
    server.send_response(response)
    with pytest.raises(ProtocolError, match="already sent"):
        server.accept()
    with pytest.raises(ProtocolError, match="already sent"):
        server.send_response(response)


def test_switching_protocols_needs_a_valid_request() -> None:
    server = server_receiving(upgrade_request(drop=("Sec-WebSocket-Key",)))
    with pytest.raises(ProtocolError, match="cannot switch protocols"):
        server.send_response(Response(101, "Switching Protocols", Headers()))


def test_a_refusal_after_accept_negotiates_nothing() -> None:
    """A process_response hook may still turn the 101 into a refusal."""
    server = server_receiving(
        upgrade_request(
            extra=[
                ("Sec-WebSocket-Protocol", "a"),
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ]
        )
    )
    server.accept(subprotocol="a")
    negotiated = (server.subprotocol, server.extension)
    assert negotiated[0] == "a"
    assert negotiated[1] is not None
    server.send_response(make_response(403, "no"))
    assert server.subprotocol is None
    assert server.extension is None


def test_send_response_completes_hand_built_responses() -> None:
    server = server_receiving(upgrade_request(drop=("Upgrade",)))
    server.send_response(Response(418, "I'm a teapot", Headers([("X-A", "1")]), b"short and stout"))
    assert server.data_to_send() == (
        b"HTTP/1.1 418 I'm a teapot\r\n"
        b"X-A: 1\r\n"
        b"Content-Length: 15\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"short and stout"
    )
    assert server.data_to_send() == b""


def test_send_response_keeps_caller_framing_and_connection() -> None:
    server = server_receiving(upgrade_request(drop=("Upgrade",)))
    headers = Headers([("Transfer-Encoding", "chunked"), ("Connection", "keep-alive")])
    server.send_response(Response(200, "", headers, b"3\r\nabc\r\n0\r\n\r\n"))
    assert server.data_to_send() == (
        b"HTTP/1.1 200 \r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n"
        b"\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (Response(100, "Continue", Headers()), "cannot send a 100 response"),
        (Response(600, "Nope", Headers()), "cannot send a 600 response"),
        (Response(400, "Bad\r\nX: y", Headers()), "control character"),
        (Response(204, "No Content", Headers(), b"x"), "a 204 response has no body"),
        (
            Response(200, "OK", Headers([("Content-Length", "3")]), b"ab"),
            "Content-Length 3 does not match a 2-byte body",
        ),
    ],
)
def test_send_response_refuses_impossible_responses(response: Response, match: str) -> None:
    server = server_receiving(upgrade_request(drop=("Upgrade",)))
    with pytest.raises(ValueError, match=match):
        server.send_response(response)
    assert server.data_to_send() == b""


def test_a_101_has_no_body() -> None:
    server = server_receiving(upgrade_request())
    response = server.accept()
    response.body = b"oops"
    with pytest.raises(ValueError, match="a 101 response has no body"):
        server.send_response(response)


# --- client-side failures --------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error_type", "message"),
    [
        pytest.param(
            switch_response(drop=("Upgrade",)),
            InvalidHeader,
            "missing Upgrade header",
            id="no-upgrade",
        ),
        pytest.param(
            switch_response(drop=("Upgrade",), extra=[("Upgrade", "h2c")]),
            InvalidHeader,
            "invalid Upgrade header: h2c (expected 'websocket')",
            id="wrong-upgrade",
        ),
        pytest.param(
            switch_response(drop=("Upgrade",), extra=[("Upgrade", "")]),
            InvalidHeader,
            "empty Upgrade header (expected 'websocket')",
            id="empty-upgrade",
        ),
        pytest.param(
            switch_response(drop=("Connection",)),
            InvalidHeader,
            "missing Connection header",
            id="no-connection",
        ),
        pytest.param(
            switch_response(drop=("Sec-WebSocket-Accept",)),
            InvalidHeader,
            "missing Sec-WebSocket-Accept header",
            id="no-accept",
        ),
        pytest.param(
            switch_response(extra=[("Sec-WebSocket-Accept", ACCEPT)]),
            InvalidHeader,
            f"invalid Sec-WebSocket-Accept header: {ACCEPT}, {ACCEPT} (more than one)",
            id="two-accepts",
        ),
        pytest.param(
            switch_response(
                drop=("Sec-WebSocket-Accept",), extra=[("Sec-WebSocket-Accept", accept_key("x"))]
            ),
            InvalidHeader,
            f"invalid Sec-WebSocket-Accept header: {accept_key('x')} (does not match the key)",
            id="wrong-accept",
        ),
        pytest.param(
            switch_response(extra=[("Sec-WebSocket-Protocol", "chat")]),
            NegotiationError,
            "server chose subprotocol 'chat', which the client did not offer",
            id="subprotocol-not-offered",
        ),
        pytest.param(
            switch_response(extra=[("Sec-WebSocket-Protocol", "a, b")]),
            InvalidHeader,
            "invalid Sec-WebSocket-Protocol header: a, b (the server must choose exactly one)",
            id="two-subprotocols",
        ),
        pytest.param(
            switch_response(extra=[("Sec-WebSocket-Protocol", "")]),
            InvalidHeader,
            "empty Sec-WebSocket-Protocol header (the server must choose exactly one)",
            id="empty-subprotocol",
        ),
        pytest.param(
            switch_response(extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]),
            NegotiationError,
            "server chose extensions 'permessage-deflate', but the client offered none",
            id="extension-not-offered",
        ),
    ],
)
def test_client_refuses_invalid_101_responses(
    response: bytes, error_type: type[InvalidHandshake], message: str
) -> None:
    client = client_receiving(response + SERVER_FRAME)
    assert client.complete
    assert not client.accepted
    assert type(client.error) is error_type
    assert str(client.error) == message
    assert client.response is not None
    assert client.response.status_code == 101
    assert client.subprotocol is None
    assert client.extension is None
    # Nothing more is collected once the handshake failed.
    client.receive_data(b"more")
    assert client.trailing_data == SERVER_FRAME


def test_client_checks_extensions_with_deflate() -> None:
    client = client_receiving(
        switch_response(extra=[("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")]),
        compression=DeflateConfig(),
    )
    assert isinstance(client.error, NegotiationError)
    assert "x-webkit-deflate-frame" in str(client.error)
    client = client_receiving(
        switch_response(extra=[("Sec-WebSocket-Extensions", "permessage-deflate; ;")]),
        compression=DeflateConfig(),
    )
    assert isinstance(client.error, InvalidHeader)


def test_client_accepts_a_101_with_tokens_over_several_lines() -> None:
    client = client_receiving(
        switch_response(
            drop=("Upgrade", "Connection"),
            extra=[
                ("Upgrade", "h2c"),
                ("upgrade", "WebSocket"),
                ("Connection", "keep-alive, upgrade"),
                ("Sec-WebSocket-Protocol", "chat"),
            ],
        ),
        subprotocols=["other", "chat"],
    )
    assert client.accepted
    assert client.subprotocol == "chat"


def test_client_skips_interim_responses() -> None:
    client = client_receiving(b"HTTP/1.1 100 Continue\r\n\r\n" + switch_response())
    assert client.accepted


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, [("Content-Type", "text/html")], b"<h1>It works</h1>"),
        (301, [("Location", "wss://example.com/chat")], b"Moved"),
        (404, [], b"Not Found"),
        (503, [("Retry-After", "30")], b"Service Unavailable, try later"),
    ],
)
def test_client_reports_other_statuses_with_the_response_and_body(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    reason = make_response(status).reason_phrase
    response_bytes = http_message(
        f"HTTP/1.1 {status} {reason}",
        [*headers, ("Content-Length", str(len(body)))],
        body=body,
    )
    client = client_receiving(response_bytes[:-3])
    complete_before_the_body_ends = client.complete
    assert not complete_before_the_body_ends
    client.receive_data(response_bytes[-3:] + b"ignored")
    assert client.complete
    assert not client.accepted
    assert isinstance(client.error, InvalidStatus)
    assert str(client.error) == f"server rejected WebSocket connection: HTTP {status}"
    assert client.error.response is client.response
    assert client.response is not None
    assert client.response.status_code == status
    assert client.response.reason_phrase == reason
    assert client.response.body == body
    for name, value in headers:
        assert client.response.headers[name] == value
    assert client.trailing_data == b""


def test_client_reads_a_server_rejection_end_to_end() -> None:
    client = ClientHandshake("h", "/", key=KEY)
    server = ServerHandshake()
    server.receive_data(client.data_to_send().replace(b"13", b"8"))
    assert server.error_response is not None
    server.send_response(server.error_response)
    client.receive_data(server.data_to_send())
    assert isinstance(client.error, InvalidStatus)
    assert client.error.response.status_code == 426
    assert client.error.response.headers["Sec-WebSocket-Version"] == "13"
    assert b"only version 13 is supported" in client.error.response.body


def test_client_truncates_long_bodies() -> None:
    response = http_message("HTTP/1.1 500 Internal Server Error", [], body=b"x" * 100)
    client = client_receiving(response[:-40], max_response_body=50)
    assert client.complete
    assert client.response is not None
    assert client.response.body == b"x" * 50
    client = client_receiving(response, max_response_body=0)
    assert client.complete
    assert client.response is not None
    assert client.response.body == b""


def test_client_reads_a_body_without_length_until_eof() -> None:
    client = client_receiving(http_message("HTTP/1.1 403 Forbidden", [], body=b"go away"))
    assert not client.complete
    client.receive_data(b", please")
    client.receive_eof()
    assert isinstance(client.error, InvalidStatus)
    assert client.error.response.body == b"go away, please"


def test_client_reads_a_chunked_body() -> None:
    client = client_receiving(
        http_message(
            "HTTP/1.1 401 Unauthorized",
            [("Transfer-Encoding", "chunked")],
            body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
    )
    assert isinstance(client.error, InvalidStatus)
    assert client.error.response.body == b"hello world"


@pytest.mark.parametrize(
    "tail", [b"", b"5\r\nhello\r\nnot-hex\r\n"], ids=["eof-mid-body", "bad-chunk"]
)
def test_client_keeps_the_status_when_the_body_breaks(tail: bytes) -> None:
    client = client_receiving(
        http_message("HTTP/1.1 502 Bad Gateway", [("Transfer-Encoding", "chunked")], body=tail)
    )
    client.receive_eof()
    assert isinstance(client.error, InvalidStatus)
    assert client.error.response.status_code == 502
    assert client.error.response.body == tail[3:8]


def test_client_eof_mid_content_length_body() -> None:
    client = client_receiving(
        http_message("HTTP/1.1 500 Oops", [("Content-Length", "100")], body=b"partial")
    )
    client.receive_eof()
    assert isinstance(client.error, InvalidStatus)
    assert client.error.response.body == b"partial"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "connection closed before the server sent an HTTP response"),
        (b"HTTP/1.1 101 Switching", "connection closed in the middle of the HTTP response"),
    ],
)
def test_client_eof_before_the_response(data: bytes, message: str) -> None:
    client = client_receiving(data)
    client.receive_eof()
    assert client.complete
    assert type(client.error) is InvalidHandshake
    assert str(client.error) == message
    assert client.response is None
    client.receive_eof()
    assert str(client.error) == message


def test_client_refuses_garbage() -> None:
    client = client_receiving(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    assert type(client.error) is InvalidHandshake
    assert str(client.error).startswith("invalid HTTP response: ")


def test_client_refuses_oversized_headers() -> None:
    client = client_receiving(b"HTTP/1.1 101 Switching Protocols\r\n", max_header_size=1024)
    for _ in range(30):
        client.receive_data(b"X-Padding: " + b"a" * 50 + b"\r\n")
    assert type(client.error) is InvalidHandshake
    assert str(client.error) == "HTTP response headers too large"


# --- client API misuse -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subprotocols": ["ok", "not ok"]}, "invalid subprotocol 'not ok'"),
        ({"subprotocols": [""]}, "invalid subprotocol ''"),
        ({"key": "c2hvcnQ="}, "invalid Sec-WebSocket-Key"),
        ({"resource": "chat"}, "must start with '/'"),
        ({"resource": "/café"}, "must be ASCII"),
        ({"resource": "/a b"}, "invalid resource '/a b'"),
        ({"host": "evil\r\nX-Injected: 1"}, "control character"),
        ({"origin": "https://x\n"}, "control character"),
        ({"additional_headers": [("X-A", "1\r\nX-B: 2")]}, "control character"),
        ({"user_agent": "ua\x00"}, "control character"),
    ],
)
def test_client_refuses_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"host": "example.com", "resource": "/"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ClientHandshake(**arguments)  # type: ignore[arg-type]  # built from a dict on purpose


def test_client_refuses_a_single_string_of_subprotocols() -> None:
    with pytest.raises(TypeError, match="not a str"):
        ClientHandshake("h", "/", subprotocols="chat")


# --- robustness --------------------------------------------------------------


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
@example(data=upgrade_request() + CLIENT_FRAME, cuts=[5, 50])
@example(data=b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000, cuts=[])
def test_server_never_raises_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    server = ServerHandshake(max_header_size=1024)
    for chunk in chunked(data, cuts):
        server.receive_data(chunk)
    assert server.error is None or server.error_response is not None
    waiting = server.request is None and server.error is None
    server.receive_eof()
    if waiting:
        assert server.error is not None
    else:
        assert server.request is not None or server.error is not None
    if server.error_response is not None:
        server.send_response(server.error_response)
        head, _ = parse_response(server.data_to_send())
        assert 400 <= head.status_code <= 599
    elif server.error is None:
        server.send_response(server.accept())
        assert server.data_to_send().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
@example(data=switch_response() + SERVER_FRAME, cuts=[3])
@example(data=b"HTTP/1.1 404 Not Found\r\n\r\nbody", cuts=[])
def test_client_never_raises_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    client = ClientHandshake("h", "/", key=KEY, max_header_size=1024)
    for chunk in chunked(data, cuts):
        client.receive_data(chunk)
    client.receive_eof()
    assert client.complete
    assert client.accepted == (client.error is None)


@given(cuts=st.lists(st.integers(0, 400), max_size=10))
def test_splitting_a_valid_request_anywhere_gives_the_same_result(cuts: list[int]) -> None:
    data = upgrade_request(extra=[("Sec-WebSocket-Protocol", "a, b")]) + CLIENT_FRAME
    server = ServerHandshake()
    for chunk in chunked(data, cuts):
        server.receive_data(chunk)
    assert server.error is None
    assert server.request is not None
    assert server.request.path == "/chat"
    assert server.client_subprotocols == ["a", "b"]
    assert server.trailing_data == CLIENT_FRAME


def test_the_request_records_its_method() -> None:
    server = ServerHandshake()
    server.receive_data(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert server.request is not None
    assert server.request.method == "POST"
    assert server.request.path == "/healthz"


def test_a_head_request_gets_headers_and_no_body() -> None:
    """RFC 9110 §9.3.2: the answer to HEAD has the GET answer's headers,
    Content-Length included, and no body: for a hook's response too."""
    server = ServerHandshake()
    server.receive_data(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.request is not None
    assert server.request.method == "HEAD"
    server.send_response(make_response(200, "OK\n"))
    wire = server.data_to_send()
    assert wire.endswith(b"\r\n\r\n")
    assert b"Content-Length: 3\r\n" in wire
    assert b"OK\n" not in wire.partition(b"\r\n\r\n")[2]


def test_the_405_for_head_has_no_body_either() -> None:
    server = ServerHandshake()
    server.receive_data(b"HEAD /chat HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.error_response is not None
    assert server.error_response.status_code == 405
    server.send_response(server.error_response)
    head, _, body = server.data_to_send().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert body == b""
