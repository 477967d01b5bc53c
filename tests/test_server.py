"""The server (trio_ws/server.py) over real loopback sockets.

Clients are our own ``open_websocket_url``, a raw socket speaking scripted
HTTP for what a well-behaved client never sends, and, for a sanity check of
interoperability, the ``websockets`` library. Every async test runs on
asyncio and trio unless marked otherwise, bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
import trio.testing
import trustme

import trio_ws
from trio_ws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    Headers,
    InvalidHandshake,
    InvalidStatus,
    Request,
    Response,
    State,
    WebSocketConnection,
    WebSocketServer,
    make_response,
)
from trio_ws.protocol.handshake import SERVER, accept_key
from trio_ws.server import accept_waiting

#: Upper bound on any single test; nothing here should come close.
TIMEOUT = 10

Handler = Callable[[WebSocketConnection], Awaitable[None]]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


async def echo(ws: WebSocketConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def start_server(
    task_group: anyio.abc.TaskGroup,
    handler: Handler = echo,
    host: str | Sequence[str] | None = "127.0.0.1",
    **options: Any,
) -> tuple[WebSocketServer, anyio.CancelScope]:
    """Start ``serve_websocket`` on port 0 in ``task_group``; return the
    server and a cancel scope that stops it alone."""
    scope = anyio.CancelScope()

    async def run(*, task_status: anyio.abc.TaskStatus[WebSocketServer]) -> None:
        with scope:
            await trio_ws.serve_websocket(handler, host, 0, task_status=task_status, **options)

    server: WebSocketServer = await task_group.start(run)
    return server, scope


@asynccontextmanager
async def serving(
    handler: Handler = echo, host: str | Sequence[str] | None = "127.0.0.1", **options: Any
) -> AsyncIterator[WebSocketServer]:
    """Run a server for the duration of the block."""
    async with anyio.create_task_group() as task_group:
        server, scope = await start_server(task_group, handler, host, **options)
        try:
            yield server
        finally:
            scope.cancel()


def url(server: WebSocketServer, path: str = "/", host: str = "127.0.0.1") -> str:
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{server.port}{path}"


async def assert_serving(server: WebSocketServer, host: str = "127.0.0.1") -> None:
    """The server still answers a WebSocket client."""
    async with trio_ws.open_websocket_url(url(server, host=host)) as ws:
        await ws.send("still serving")
        assert await ws.recv() == "still serving"


def upgrade_request(
    path: str = "/",
    *,
    key: str = KEY,
    version: str = "13",
    extra: Sequence[str] = (),
    omit: Sequence[str] = (),
) -> bytes:
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": version,
    }
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name not in omit]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_until_eof(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


class RawResponse:
    """An HTTP response read from a raw socket until the server closed it."""

    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ")
        assert version == "HTTP/1.1", status_line
        self.status = int(status)
        self.headers = Headers()
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers.add(name, value)


async def raw_exchange(port: int, request: bytes, host: str = "127.0.0.1") -> RawResponse:
    """Send ``request`` on a fresh TCP connection; read the answer until EOF."""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(request)
        return RawResponse(await read_until_eof(stream))


def server_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith("trio_ws") and record.levelno >= logging.ERROR
    ]


# -- TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- listening ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_nursery_start_returns_the_running_server() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            assert isinstance(server, WebSocketServer)
            assert server.port > 0
            assert len(server.listeners) == 1
            assert server.sockets_addresses() == [("127.0.0.1", server.port)]
            assert str(server.port) in repr(server)
            await assert_serving(server)
        # The address stays readable once the listeners are closed.
        assert server.port > 0
        assert str(server.port) in repr(server)


@pytest.mark.anyio
@pytest.mark.usefixtures("ipv6")
async def test_host_none_listens_on_ipv4_and_ipv6() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(host=None) as server:
            await assert_serving(server, "127.0.0.1")
            await assert_serving(server, "::1")


@pytest.mark.anyio
@pytest.mark.usefixtures("ipv6")
async def test_a_list_of_hosts_listens_on_each_with_one_port() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(host=["127.0.0.1", "::1"]) as server:
            assert len(server.listeners) == 2
            ports = {address[1] for address in server.sockets_addresses()}
            assert ports == {server.port}
            await assert_serving(server, "127.0.0.1")
            await assert_serving(server, "::1")


@pytest.mark.anyio
async def test_unix_socket_server(tmp_path: Path) -> None:
    path = str(tmp_path / "srv.sock")
    with anyio.fail_after(TIMEOUT):
        async with serving(unix_socket_path=path) as server:
            assert server.sockets_addresses() == [path]
            with pytest.raises(RuntimeError, match="TCP"):
                server.port  # noqa: B018 - the property raises
            async with trio_ws.open_websocket_url("ws://localhost/", unix_socket_path=path) as ws:
                await ws.send("unix")
                assert await ws.recv() == "unix"


@pytest.mark.anyio
async def test_wss_server(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=server_context) as server:
            assert server.ssl_context is server_context
            async with trio_ws.open_websocket_url(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context
            ) as ws:
                await ws.send("secure")
                assert await ws.recv() == "secure"


@pytest.mark.anyio
async def test_a_plain_client_on_a_tls_server_fails_and_the_server_goes_on(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=server_context) as server:
            with pytest.raises(InvalidHandshake):
                async with trio_ws.open_websocket_url(url(server)):
                    pass
            async with trio_ws.open_websocket_url(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context
            ) as ws:
                await ws.send("fine")
                assert await ws.recv() == "fine"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"bogus": 1}, TypeError),
        ({"origins": "https://example.com"}, TypeError),
        ({"subprotocols": "chat"}, TypeError),
        ({"compression": "zstd"}, ValueError),
        ({"open_timeout": 0}, ValueError),
        ({"max_size": -1}, ValueError),
        ({"ping_interval": "often"}, TypeError),
        ({"additional_headers": {"X-Evil": "a\r\nSet-Cookie: x"}}, ValueError),
        ({"server_header": "me\r\nX-Injected: 1"}, ValueError),
    ],
)
@pytest.mark.anyio
async def test_bad_options_raise_before_listening(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            with pytest.raises(error):
                await tg.start(
                    functools.partial(trio_ws.serve_websocket, echo, "127.0.0.1", 0, **options)
                )


# -- handlers -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_slow_handler_does_not_block_other_clients() -> None:
    slow_started = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/slow":
            slow_started.set()
            await anyio.sleep_forever()
        await echo(ws)

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler) as server,
            trio_ws.open_websocket_url(url(server, "/slow"), close_timeout=0),
        ):
            await slow_started.wait()
            await assert_serving(server)
            assert len(server.connections) == 1


@pytest.mark.anyio
async def test_server_connections_tracks_open_connections() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            assert server.connections == set()
            async with trio_ws.open_websocket_url(url(server)) as ws:
                await ws.send("x")
                await ws.recv()
                [connection] = server.connections
                assert connection.state is State.OPEN
                assert connection.remote_address == ws.local_address
            await assert_serving(server)
            assert server.connections == set()


@pytest.mark.anyio
async def test_a_handler_that_raises_closes_with_1011_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class HandlerBug(Exception):
        pass

    async def handler(ws: WebSocketConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/bug":
            raise HandlerBug("boom")
        await echo(ws)

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(url(server, "/bug")) as ws:
                with pytest.raises(ConnectionClosedError) as excinfo:
                    await ws.recv()
            assert excinfo.value.rcvd is not None
            assert excinfo.value.rcvd.code == 1011
            await assert_serving(server)
    [record] = server_errors(caplog)
    assert record.name == "trio_ws.server"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], HandlerBug)
    assert getattr(record, "websocket", None) is not None


@pytest.mark.anyio
async def test_a_handler_that_returns_closes_with_1000() -> None:
    async def handler(ws: WebSocketConnection) -> None:
        await ws.send("bye")

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server, trio_ws.open_websocket_url(url(server)) as ws:
            assert [message async for message in ws] == ["bye"]
            with pytest.raises(ConnectionClosedOK) as excinfo:
                await ws.recv()
            assert excinfo.value.rcvd is not None
            assert excinfo.value.rcvd.code == 1000
            await ws.wait_closed()
            assert ws.close_code == 1000


@pytest.mark.anyio
@pytest.mark.parametrize("client_fails", [False, True])
async def test_connection_closed_escaping_a_handler_is_not_an_error(
    caplog: pytest.LogCaptureFixture, client_fails: bool
) -> None:
    raised: list[type[BaseException]] = []
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        assert ws.request is not None
        if ws.request.path != "/watched":
            return await echo(ws)
        try:
            while True:
                await ws.recv()  # raises once the client is gone
        except BaseException as exc:
            raised.append(type(exc))
            done.set()
            raise

    class ClientBug(Exception):
        pass

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            try:
                async with trio_ws.open_websocket_url(url(server, "/watched")):
                    if client_fails:
                        raise ClientBug  # leaves with 1011
            except ClientBug:
                pass
            await done.wait()
            await assert_serving(server)
    expected = ConnectionClosedError if client_fails else ConnectionClosedOK
    assert raised == [expected]
    assert server_errors(caplog) == []


# -- process_request, process_response, negotiation ----------------------------------


def health(request: Request) -> Response | None:
    if request.path == "/health":
        return make_response(200, "OK")
    return None


async def async_health(request: Request) -> Response | None:
    await anyio.lowlevel.checkpoint()
    return health(request)


@pytest.mark.anyio
@pytest.mark.parametrize("hook", [health, async_health], ids=["sync", "async"])
async def test_process_request_answers_a_health_check_on_the_same_port(
    hook: Callable[[Request], Any],
) -> None:
    seen: list[tuple[WebSocketConnection, str]] = []

    def process_request(ws: WebSocketConnection, request: Request) -> Any:
        seen.append((ws, request.path))
        return hook(request)

    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=process_request) as server:
            # A plain HTTP GET, no upgrade at all.
            plain = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            response = await raw_exchange(server.port, plain)
            assert response.status == 200
            assert response.body == b"OK"
            assert response.headers["Content-Length"] == "2"
            assert response.headers["Connection"] == "close"
            # An upgrade request there gets the same answer.
            response = await raw_exchange(server.port, upgrade_request("/health"))
            assert response.status == 200
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(url(server, "/health")):
                    pass
            assert excinfo.value.response.status_code == 200
            # Other paths: None, so the handshake goes on.
            await assert_serving(server)
    assert [path for _, path in seen] == ["/health"] * 3 + ["/"]
    assert all(isinstance(ws, WebSocketConnection) for ws, _ in seen)


@pytest.mark.anyio
async def test_process_request_rejects_with_401_and_www_authenticate() -> None:
    def authenticate(ws: WebSocketConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") == "Bearer good":
            return None
        return make_response(
            401, "Missing token.\n", headers={"WWW-Authenticate": 'Bearer realm="chat"'}
        )

    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=authenticate) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(url(server)):
                    pass
            response = excinfo.value.response
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="chat"'
            assert response.body == b"Missing token.\n"
            headers = {"Authorization": "Bearer good"}
            async with trio_ws.open_websocket_url(url(server), additional_headers=headers) as ws:
                await ws.send("authorized")
                assert await ws.recv() == "authorized"


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ["process_request", "process_response", "select_subprotocol"])
async def test_a_hook_that_raises_gets_500_and_a_logged_traceback(
    caplog: pytest.LogCaptureFixture, hook: str
) -> None:
    class HookBug(Exception):
        pass

    calls = 0

    def buggy(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise HookBug
        return None

    with anyio.fail_after(TIMEOUT):
        options: dict[str, Any] = {hook: buggy}
        async with serving(**options) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(url(server), subprotocols=["chat"]):
                    pass
            assert excinfo.value.response.status_code == 500
            await assert_serving(server)  # the second call succeeds
    [record] = server_errors(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], HookBug)


@pytest.mark.anyio
async def test_process_response_sees_and_modifies_the_101() -> None:
    seen: list[tuple[str, int]] = []

    async def process_response(
        ws: WebSocketConnection, request: Request, response: Response
    ) -> Response | None:
        seen.append((request.path, response.status_code))
        response.headers["X-Extra"] = "added"
        response.headers["Set-Cookie"] = "session=1"
        return None

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(process_response=process_response) as server,
            trio_ws.open_websocket_url(url(server, "/p")) as ws,
        ):
            assert ws.response is not None
            assert ws.response.headers["X-Extra"] == "added"
            assert ws.response.headers["Set-Cookie"] == "session=1"
            await ws.send("modified")
            assert await ws.recv() == "modified"
    assert seen == [("/p", 101)]


@pytest.mark.anyio
async def test_process_response_may_replace_the_response() -> None:
    def process_response(
        ws: WebSocketConnection, request: Request, response: Response
    ) -> Response | None:
        return make_response(503, "maintenance", headers={"Retry-After": "30"})

    handled: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        handled.append(ws)

    with anyio.fail_after(TIMEOUT):
        async with serving(handler, process_response=process_response) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(url(server)):
                    pass
    assert excinfo.value.response.status_code == 503
    assert excinfo.value.response.headers["Retry-After"] == "30"
    assert handled == []


@pytest.mark.anyio
async def test_select_subprotocol_hook() -> None:
    offers: list[list[str]] = []

    def select(ws: WebSocketConnection, offered: Sequence[str]) -> str | None:
        offers.append(list(offered))
        return offered[-1] if offered else None

    chosen: list[str | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        chosen.append(ws.subprotocol)

    with anyio.fail_after(TIMEOUT):
        async with serving(handler, select_subprotocol=select, subprotocols=["a"]) as server:
            async with trio_ws.open_websocket_url(url(server), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"
                await ws.wait_closed()
            async with trio_ws.open_websocket_url(url(server)) as ws:
                assert ws.subprotocol is None
                await ws.wait_closed()
    assert offers == [["a", "b"], []]
    assert chosen == ["b", None]


@pytest.mark.anyio
async def test_select_subprotocol_returning_an_unoffered_one_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def select(ws: WebSocketConnection, offered: Sequence[str]) -> str | None:
        return "never-offered"

    with anyio.fail_after(TIMEOUT):
        async with serving(select_subprotocol=select) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(url(server), subprotocols=["chat"]):
                    pass
    assert excinfo.value.response.status_code == 500
    assert len(server_errors(caplog)) == 1


@pytest.mark.anyio
async def test_subprotocols_default_selection_follows_server_preference() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(subprotocols=["v3", "v2", "v1"]) as server:
            async with trio_ws.open_websocket_url(url(server), subprotocols=["v1", "v2"]) as ws:
                assert ws.subprotocol == "v2"
            async with trio_ws.open_websocket_url(url(server), subprotocols=["v9"]) as ws:
                assert ws.subprotocol is None
                await ws.send("no subprotocol is fine")
                assert await ws.recv() == "no subprotocol is fine"


@pytest.mark.anyio
async def test_origins() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(origins=["https://good.example"]) as server:
            async with trio_ws.open_websocket_url(url(server), origin="https://good.example"):
                pass
            for origin in ["https://evil.example", None]:
                with pytest.raises(InvalidStatus) as excinfo:
                    async with trio_ws.open_websocket_url(url(server), origin=origin):
                        pass
                assert excinfo.value.response.status_code == 403
        async with serving(origins=["https://good.example", None]) as server:
            async with trio_ws.open_websocket_url(url(server)):
                pass
            with pytest.raises(InvalidStatus):
                async with trio_ws.open_websocket_url(url(server), origin="https://evil.example"):
                    pass


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("server_header", "expected"), [(SERVER, SERVER), ("my-server/2", "my-server/2"), (None, None)]
)
async def test_additional_headers_and_server_header(
    server_header: str | None, expected: str | None
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(
                additional_headers=[("X-Served-By", "test"), ("X-Served-By", "twice")],
                server_header=server_header,
            ) as server,
            trio_ws.open_websocket_url(url(server)) as ws,
        ):
            assert ws.response is not None
            assert ws.response.headers.get_all("X-Served-By") == ["test", "twice"]
            assert ws.response.headers.get("Server") == expected


@pytest.mark.anyio
async def test_server_options_reach_the_connection() -> None:
    seen: list[tuple[Any, ...]] = []

    async def handler(ws: WebSocketConnection) -> None:
        seen.append((ws.max_size, ws.ping_interval, ws.close_timeout, ws.extension))

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(
                handler, max_size=10, ping_interval=None, close_timeout=1, compression=None
            ) as server,
            trio_ws.open_websocket_url(url(server)) as ws,
        ):
            await ws.wait_closed()
    assert seen == [(10, None, 1, None)]


@pytest.mark.anyio
async def test_server_max_size() -> None:
    closes: list[int | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        with pytest.raises(ConnectionClosedError) as excinfo:
            await ws.recv()
        assert excinfo.value.sent is not None
        closes.append(excinfo.value.sent.code)

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler, max_size=10) as server,
            trio_ws.open_websocket_url(url(server)) as ws,
        ):
            await ws.send("x" * 11)
            with pytest.raises(ConnectionClosedError) as excinfo:
                await ws.recv()
    assert excinfo.value.code == 1009
    assert closes == [1009]


# -- bad requests over raw sockets ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_bytes", "status", "headers", "text"),
    [
        (b"garbage\r\n\r\n", 400, {}, "invalid HTTP request"),
        (upgrade_request(omit=["Sec-WebSocket-Key"]), 400, {}, "Sec-WebSocket-Key"),
        (upgrade_request(key="short"), 400, {}, "Sec-WebSocket-Key"),
        (upgrade_request(omit=["Host"]), 400, {}, ""),
        (
            upgrade_request(omit=["Connection"]),
            400,
            {},
            "Connection",
        ),
        (
            upgrade_request(version="8"),
            426,
            {"Sec-WebSocket-Version": "13", "Upgrade": "websocket"},
            "version 13",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            426,
            {"Upgrade": "websocket"},
            "Upgrade",
        ),
        (
            upgrade_request().replace(b"GET", b"POST", 1),
            405,
            {"Allow": "GET"},
            "POST",
        ),
        (upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400, {}, "HTTP/1.0"),
        (upgrade_request(extra=["X-Big: " + "x" * 20_000]), 431, {}, "larger than"),
        (
            upgrade_request(extra=[f"X-Many-{i}: {'y' * 100}" for i in range(200)]),
            431,
            {},
            "larger than",
        ),
    ],
    ids=[
        "garbage",
        "no-key",
        "bad-key",
        "no-host",
        "no-connection",
        "version-8",
        "not-an-upgrade",
        "post",
        "http-1.0",
        "one-huge-header",
        "many-headers",
    ],
)
async def test_malformed_requests_get_an_http_error(
    request_bytes: bytes,
    status: int,
    headers: dict[str, str],
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            response = await raw_exchange(server.port, request_bytes)
            assert response.status == status
            for name, value in headers.items():
                assert response.headers[name] == value
            assert response.headers["Content-Type"].startswith("text/plain")
            assert int(response.headers["Content-Length"]) == len(response.body)
            assert text.encode() in response.body
            await assert_serving(server)
    assert server_errors(caplog) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"\x00" * 1000,
        bytes(range(256)) * 100,
        b"\r\n" * 5000,
        b"GET / HTTP/1.1\r\n",  # then EOF mid-request
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        upgrade_request(extra=["Sec-WebSocket-Extensions: permessage-deflate; bogus=\x01"]),
        upgrade_request(extra=["Sec-WebSocket-Extensions: ,,;;=="]),
        upgrade_request() + b"\x88\x80garbage frames after the handshake",
    ],
)
async def test_garbage_never_crashes_the_server(
    junk: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                if junk:
                    await stream.send(junk)
                await stream.send_eof()
                data = await read_until_eof(stream)
            if data:
                assert data.startswith(b"HTTP/1.1 ")
            await assert_serving(server)
    assert server_errors(caplog) == []


# -- open_timeout --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
async def test_open_timeout_drops_a_slowloris_client(sent: bytes) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(open_timeout=0.1) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                await stream.send(sent)
                # The server hangs up on us: no response, just EOF.
                assert await read_until_eof(stream) == b""
            await assert_serving(server)


@pytest.mark.anyio
async def test_open_timeout_drops_a_tls_client_that_never_handshakes(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=server_context, open_timeout=0.1) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                assert await read_until_eof(stream) == b""
            async with trio_ws.open_websocket_url(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context
            ) as ws:
                await ws.send("after the slowloris")
                assert await ws.recv() == "after the slowloris"


@pytest.mark.trio
async def test_open_timeout_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(trio_ws.serve_websocket, echo, "127.0.0.1", 0, open_timeout=30)
        )
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\n")
            start = trio.current_time()
            assert await stream.receive_some() == b""
            assert trio.current_time() - start == pytest.approx(30)
        nursery.cancel_scope.cancel()


# -- shutting down ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["aclose", "cancel"])
@pytest.mark.parametrize("handler_kind", ["echo", "asleep"])
async def test_stopping_the_server_closes_connections_with_1001(
    how: str, handler_kind: str
) -> None:
    handlers_done: list[str] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            if handler_kind == "echo":
                await echo(ws)
            else:
                await anyio.sleep_forever()
        finally:
            handlers_done.append(ws.request.path)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            server, scope = await start_server(tg, handler)
            async with (
                trio_ws.open_websocket_url(url(server, "/a")) as first,
                trio_ws.open_websocket_url(url(server, "/b")) as second,
            ):
                await first.send("ready?")
                await second.send("ready?")
                if handler_kind == "echo":
                    assert await first.recv() == "ready?"
                    assert await second.recv() == "ready?"
                if how == "aclose":
                    await server.aclose()
                else:
                    scope.cancel()
                for ws in (first, second):
                    with pytest.raises(ConnectionClosedOK) as excinfo:
                        await ws.recv()
                    assert excinfo.value.rcvd is not None
                    assert excinfo.value.rcvd.code == 1001
                    await ws.wait_closed()
                    assert ws.close_code == 1001
        # The serve task ended, so did every handler.
        assert sorted(handlers_done) == ["/a", "/b"]
        with pytest.raises(OSError):  # noqa: PT011 - refused, nothing listens
            await anyio.connect_tcp("127.0.0.1", server.port)


@pytest.mark.anyio
async def test_aclose_returns_once_the_server_stopped() -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            server, _ = await start_server(tg)
            await server.aclose()
            await server.aclose()  # idempotent
            assert server.connections == set()
        with pytest.raises(OSError):  # noqa: PT011 - refused, nothing listens
            await anyio.connect_tcp("127.0.0.1", server.port)


@pytest.mark.trio
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_closing_waits_at_most_close_timeout_for_a_silent_client(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[WebSocketServer]) -> None:
            with scope:
                await trio_ws.serve_websocket(
                    echo,
                    "127.0.0.1",
                    0,
                    close_timeout=7,
                    compression=None,
                    ping_interval=None,  # no other timer for the autojump clock to skip to
                    task_status=task_status,
                )

        server = await nursery.start(run)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(upgrade_request())
            response = b""
            while b"\r\n\r\n" not in response:
                response += await stream.receive_some()
            assert response.startswith(b"HTTP/1.1 101 ")
            assert accept_key(KEY).encode() in response
            start = trio.current_time()
            # The client never answers the close frame.
            if how == "aclose":
                await server.aclose()
            else:
                scope.cancel()
            data = await stream.receive_some()
            while chunk := await stream.receive_some():
                data += chunk
            assert trio.current_time() - start == pytest.approx(7)
            # An unmasked close frame with code 1001 (0x03e9), then EOF.
            assert data[:4] == b"\x88\x02\x03\xe9"


@pytest.mark.trio
async def test_handler_nursery_runs_the_handlers() -> None:
    parents: list[trio.Nursery | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        parents.append(trio.lowlevel.current_task().parent_nursery)
        await echo(ws)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as handlers, trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(
                    trio_ws.serve_websocket, handler, "127.0.0.1", 0, handler_nursery=handlers
                )
            )
            await assert_serving(server)
            nursery.cancel_scope.cancel()
    assert parents == [handlers]


@pytest.mark.anyio
async def test_handler_nursery_connections_close_with_1001_when_the_server_stops() -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as handlers, anyio.create_task_group() as tg:
            server, scope = await start_server(tg, handler_nursery=handlers)
            async with trio_ws.open_websocket_url(url(server)) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                scope.cancel()
                with pytest.raises(ConnectionClosedOK) as excinfo:
                    await ws.recv()
                assert excinfo.value.rcvd is not None
                assert excinfo.value.rcvd.code == 1001


# -- wrap_server_stream -----------------------------------------------------------------


@asynccontextmanager
async def accepted_pair() -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
    """A connected (client, server) pair of TCP streams over 127.0.0.1."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as multi:
        [listener] = multi.listeners
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()
        async with client, server:
            yield client, server


@pytest.mark.anyio
async def test_wrap_server_stream() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            accepted_pair() as (client_stream, server_stream),
            anyio.create_task_group() as tg,
        ):
            results: list[WebSocketConnection] = []

            async def accept() -> None:
                results.append(
                    await trio_ws.wrap_server_stream(tg, server_stream, subprotocols=["chat"])
                )

            tg.start_soon(accept)
            client = await trio_ws.wrap_client_stream(
                tg, client_stream, "127.0.0.1", "/w", subprotocols=["chat"]
            )
            await anyio.wait_all_tasks_blocked()
            [server] = results
            assert server.subprotocol == client.subprotocol == "chat"
            assert server.request is not None
            assert server.request.path == "/w"
            await client.send("wrapped")
            assert await server.recv() == "wrapped"
            await server.aclose(1001, "bye")
            with pytest.raises(ConnectionClosedOK) as excinfo:
                await client.recv()
            assert excinfo.value.rcvd is not None
            assert excinfo.value.rcvd.reason == "bye"
            await client.aclose()


@pytest.mark.anyio
async def test_wrap_server_stream_refusal_raises_and_closes_the_stream() -> None:
    def refuse(ws: WebSocketConnection, request: Request) -> Response:
        return make_response(403, "no")

    with anyio.fail_after(TIMEOUT):
        async with accepted_pair() as (client_stream, server_stream):
            await client_stream.send(upgrade_request())
            async with anyio.create_task_group() as tg:
                with pytest.raises(InvalidHandshake):
                    await trio_ws.wrap_server_stream(tg, server_stream, process_request=refuse)
            response = RawResponse(await read_until_eof(client_stream))
            assert response.status == 403


@pytest.mark.anyio
async def test_wrap_server_stream_open_timeout() -> None:
    with anyio.fail_after(TIMEOUT):
        async with accepted_pair() as (client_stream, server_stream):
            async with anyio.create_task_group() as tg:
                with pytest.raises(TimeoutError):
                    await trio_ws.wrap_server_stream(tg, server_stream, open_timeout=0.05)
            assert await read_until_eof(client_stream) == b""


# -- interoperability with the websockets library ------------------------------------

asyncio_only = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"debug": True}), id="asyncio")]
)


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize("compression", ["deflate", None])
async def test_websockets_client_against_our_server(compression: str | None) -> None:
    from websockets.asyncio.client import connect

    on_server: list[bool] = []

    async def handler(ws: WebSocketConnection) -> None:
        on_server.append(ws.extension is not None)
        await echo(ws)

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler, subprotocols=["chat"]) as server,
            connect(
                url(server, "/interop"),
                compression=compression,
                subprotocols=["chat"],  # type: ignore[list-item]  # Subprotocol is a NewType of str
                proxy=None,
            ) as client,
        ):
            assert client.subprotocol == "chat"
            await client.send("t\u00e9xt " * 1000)
            assert await client.recv() == "t\u00e9xt " * 1000
            await client.send(b"\x00\x01binary" * 1000)
            assert await client.recv() == b"\x00\x01binary" * 1000
            await client.send(["frag", "mented"])
            assert await client.recv() == "fragmented"
            assert bool(client.protocol.extensions) is (compression is not None)
    assert on_server == [compression is not None]


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize("compression", ["deflate", None])
async def test_our_client_against_a_websockets_server(compression: str | None) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    with anyio.fail_after(TIMEOUT):
        async with serve(handler, "127.0.0.1", 0, compression=compression) as ws_server:
            port = next(iter(ws_server.sockets)).getsockname()[1]
            async with trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{port}/", compression=compression
            ) as ws:
                assert (ws.extension is not None) is (compression is not None)
                await ws.send("t\u00e9xt " * 1000)
                assert await ws.recv() == "t\u00e9xt " * 1000
                await ws.send(b"\x00\x01binary" * 1000)
                assert await ws.recv() == b"\x00\x01binary" * 1000
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
            assert ws.close_code == 1000


@pytest.mark.anyio
async def test_a_disconnect_inside_a_handlers_own_nursery_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The nursery wraps the ConnectionClosed in an ExceptionGroup; that is
    still an ordinary disconnect, not a handler failure."""
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.recv)  # raises once the client leaves
                await anyio.sleep_forever()
        finally:
            done.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(url(server)):
                pass
            await done.wait()
    assert server_errors(caplog) == []


@pytest.mark.anyio
async def test_other_errors_inside_a_handlers_nursery_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocketConnection) -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(ws.recv)
            raise KeyError("a bug")

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(url(server)) as ws:
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
            assert ws.close_code == 1011
    [record] = server_errors(caplog)
    assert record.getMessage() == "connection handler failed"


@pytest.mark.anyio
async def test_closing_a_listener_stops_accepting_on_it() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                await server.listeners[0].aclose()
                # The open connection is not the listener's: it goes on.
                await ws.send("after")
                assert await ws.recv() == "after"
            with pytest.raises(ConnectionRefusedError):
                async with trio_ws.open_websocket_url(url):
                    pass
            await server.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_connections_waiting_together_are_accepted_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On asyncio, after each accept() the server takes every connection
    # already waiting, straight into its own protocol; each is served.
    import socket

    import trio_ws.server

    taken: list[int] = []

    def spy(listening: socket.socket) -> list[socket.socket]:
        accepted = accept_waiting(listening)
        taken.append(len(accepted))
        return accepted

    monkeypatch.setattr(trio_ws.server, "accept_waiting", spy)
    count = 6
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            # Connected without a pause between them: all wait in the
            # backlog when the server first looks.
            socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(count)]
            streams = []
            for sock in socks:
                sock.setblocking(False)
                streams.append(await anyio.abc.SocketStream.from_socket(sock))
            async with anyio.create_task_group() as task_group:
                for stream in streams:
                    ws = await trio_ws.wrap_client_stream(task_group, stream, "127.0.0.1")
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
                    await ws.aclose()
            assert len(server.connections) == 0
    assert sum(taken) >= 1, taken
