"""The client entry points (trio_ws/client.py) over real loopback sockets.

Every async test runs on asyncio and trio unless marked ``trio``; each one is
bounded by ``anyio.fail_after(TIMEOUT)`` so a hang fails instead of stalling
the run. Servers are our own ``serve_websocket`` on port 0, or a scripted
"raw" server for responses our server would never send.
"""

from __future__ import annotations

import base64
import functools
import logging
import select
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
import trio.testing
import trustme

import trio_ws
from tests.io_helpers import echo, serving
from trio_ws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    Request,
    Response,
    State,
    WebSocketConnection,
    make_response,
)
from trio_ws.client import _connect_ip, _connected
from trio_ws.protocol.handshake import USER_AGENT, accept_key

#: Upper bound on any single test; nothing here should come close.
TIMEOUT = 10


class Recorder:
    """A ``process_request`` hook that remembers every request it saw."""

    def __init__(self, answer: Callable[[Request], Response | None] = lambda request: None):
        self.requests: list[Request] = []
        self._answer = answer

    def __call__(self, ws: WebSocketConnection, request: Request) -> Response | None:
        self.requests.append(request)
        return self._answer(request)

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


async def read_request(stream: anyio.abc.ByteStream) -> bytes:
    """Read an HTTP request head from ``stream``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


def key_of(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode()
    raise AssertionError("no Sec-WebSocket-Key in the request")


def switching(request: bytes, *extra: str, accept: str | None = None) -> bytes:
    """A 101 response to ``request`` with extra header lines."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept or accept_key(key_of(request))}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


RawHandler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def raw_server(respond: RawHandler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running ``respond(stream)`` per connection;
    yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await respond(stream)
            except (anyio.BrokenResourceError, anyio.EndOfStream):
                pass

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        try:
            yield port
        finally:
            task_group.cancel_scope.cancel()


@contextmanager
def silent_listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A listening socket nobody accepts on: the kernel completes TCP
    handshakes, and then nothing ever answers."""
    with socket.create_server((host, 0)) as sock:
        yield sock.getsockname()[1]


@contextmanager
def refused_port() -> Iterator[int]:
    """A port bound but not listening, on 127.0.0.1 and ::1: connecting to
    it is refused."""
    with socket.socket() as sock, socket.socket(socket.AF_INET6) as sock6:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        try:
            sock6.bind(("::1", port))
        except OSError:  # taken on ::1; tests using "localhost" may then differ
            pass
        yield port


def state_of(ws: WebSocketConnection) -> State:
    """Read the state through a call, so the type checker does not carry its
    narrowing from inside a block to after it."""
    return ws.state


# -- TLS ------------------------------------------------------------------------


def server_context_for(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    return server_context_for(ca, "localhost", "127.0.0.1", "::1")


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def assert_plain(exc: BaseException) -> None:
    """DESIGN: errors reach the user as plain exceptions, never a group."""
    assert not isinstance(exc, BaseExceptionGroup)


# -- entry points ---------------------------------------------------------------


@pytest.mark.anyio
async def test_open_websocket_url_exchanges_text_and_binary() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with trio_ws.open_websocket_url(url) as ws:
                assert ws.state is State.OPEN
                await ws.send("h\u00e9llo")
                assert await ws.recv() == "h\u00e9llo"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
                assert ws.response is not None
                assert ws.response.status_code == 101
                assert ws.request is not None
                assert ws.request.path == "/chat"
                assert ws.remote_address[:2] == ("127.0.0.1", server.port)
            assert state_of(ws) is State.CLOSED
            assert ws.close_code == 1000


@pytest.mark.anyio
async def test_open_websocket_builds_the_url_from_host_port_and_resource() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            async with trio_ws.open_websocket("127.0.0.1", server.port, "/chat?room=1") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            async with trio_ws.open_websocket("127.0.0.1", server.port, "chat") as ws:
                pass
            async with trio_ws.open_websocket("127.0.0.1", server.port) as ws:
                pass
    assert recorder.paths == ["/chat?room=1", "/chat", "/"]
    assert recorder.requests[0].host == f"127.0.0.1:{server.port}"


@pytest.mark.anyio
async def test_connect_websocket_url_runs_the_connection_in_the_given_nursery() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving() as server, anyio.create_task_group() as nursery:
            url = f"ws://127.0.0.1:{server.port}/"
            ws = await trio_ws.connect_websocket_url(nursery, url, compression=None)
            # The call returned, and the connection lives on in the nursery.
            await ws.send("ping")
            assert await ws.recv() == "ping"
            assert ws.extension is None
            await ws.aclose()
            assert ws.state is State.CLOSED
            assert ws.close_code == 1000


@pytest.mark.anyio
async def test_connect_websocket_from_host_and_port() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server, anyio.create_task_group() as tg:
            ws = await trio_ws.connect_websocket(tg, "127.0.0.1", server.port, "/r?q=1")
            await ws.send(b"data")
            assert await ws.recv() == b"data"
            await ws.aclose()
    assert recorder.paths == ["/r?q=1"]


@pytest.mark.anyio
async def test_wrap_client_stream_over_an_anyio_tcp_stream() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server, anyio.create_task_group() as tg:
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            ws = await trio_ws.wrap_client_stream(tg, stream, "example.com", "/wrapped")
            await ws.send("over my stream")
            assert await ws.recv() == "over my stream"
            await ws.aclose()
    assert recorder.paths == ["/wrapped"]
    assert recorder.requests[0].host == "example.com"


@pytest.mark.anyio
async def test_wrap_client_stream_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    with anyio.fail_after(TIMEOUT):
        async with serving(unix_socket_path=path), anyio.create_task_group() as tg:
            stream = await anyio.connect_unix(path)
            ws = await trio_ws.wrap_client_stream(tg, stream, "localhost")
            await ws.send("unix")
            assert await ws.recv() == "unix"
            await ws.aclose()


@pytest.mark.anyio
async def test_wrap_client_stream_raises_invalid_status_when_refused() -> None:
    def refuse(request: Request) -> Response:
        return make_response(403, "go away")

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(process_request=Recorder(refuse)) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as stream,
            anyio.create_task_group() as tg,
        ):
            with pytest.raises(InvalidStatus) as excinfo:
                await trio_ws.wrap_client_stream(tg, stream, "h")
    assert excinfo.value.response.status_code == 403
    assert excinfo.value.response.body == b"go away"


@pytest.mark.trio
async def test_wrap_client_stream_over_a_trio_socket_stream() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_ws.serve_websocket, echo, "127.0.0.1", 0)
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            ws = await trio_ws.wrap_client_stream(nursery, stream, "127.0.0.1")
            assert ws.remote_address == ("127.0.0.1", server.port)
            await ws.send("trio stream")
            assert await ws.recv() == "trio stream"
            await ws.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_wrap_client_stream_over_a_trio_memory_stream_pair() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            results: list[WebSocketConnection] = []

            async def accept() -> None:
                results.append(await trio_ws.wrap_server_stream(nursery, server_stream))

            nursery.start_soon(accept)
            client = await trio_ws.wrap_client_stream(nursery, client_stream, "memory", "/m")
            await trio.testing.wait_all_tasks_blocked()
            [server] = results
            assert server.request is not None
            assert server.request.path == "/m"
            await client.send("in memory")
            assert await server.recv() == "in memory"
            await server.send(b"back")
            assert await client.recv() == b"back"
            await client.aclose()
            with pytest.raises(ConnectionClosedOK):
                await server.recv()
            await server.aclose()


@pytest.mark.trio
async def test_wrap_client_stream_times_out_on_a_silent_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        with pytest.raises(TimeoutError):
            await trio_ws.wrap_client_stream(nursery, client_stream, "h", open_timeout=5)
    assert trio.current_time() == pytest.approx(5)
    await client_stream.aclose()
    await server_stream.aclose()


# -- TLS --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wss_with_a_trusted_ca(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=server_context) as server:
            url = f"wss://127.0.0.1:{server.port}/secure"
            async with trio_ws.open_websocket_url(url, ssl=client_context) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
            async with trio_ws.open_websocket(
                "127.0.0.1", server.port, "/", ssl=client_context
            ) as ws:
                await ws.send(b"secret")
                assert await ws.recv() == b"secret"
            async with anyio.create_task_group() as tg:
                ws = await trio_ws.connect_websocket(
                    tg, "127.0.0.1", server.port, ssl=client_context
                )
                await ws.send("connected")
                assert await ws.recv() == "connected"
                await ws.aclose()


@pytest.mark.anyio
async def test_wss_with_verification_off_accepts_a_cert_for_another_name(
    ca: trustme.CA,
) -> None:
    other = server_context_for(ca, "other.example")
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=other) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, ssl=unverified_context()) as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"


@pytest.mark.anyio
async def test_wss_refuses_a_cert_for_another_name(
    ca: trustme.CA, client_context: ssl.SSLContext
) -> None:
    other = server_context_for(ca, "other.example")
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=other) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
                async with trio_ws.open_websocket_url(url, ssl=client_context):
                    pass
            assert_plain(excinfo.value)
            # And the server is unharmed.
            async with trio_ws.open_websocket_url(url, ssl=unverified_context()) as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"


@pytest.mark.anyio
@pytest.mark.parametrize("ssl_option", [None, True])
async def test_wss_verifies_certificates_by_default(
    server_context: ssl.SSLContext, ssl_option: bool | None
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(ssl=server_context) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            with pytest.raises(ssl.SSLCertVerificationError):
                async with trio_ws.open_websocket_url(url, ssl=ssl_option):
                    pass


@pytest.mark.anyio
async def test_wss_to_a_server_that_hangs_up_during_tls_is_an_invalid_handshake() -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        pass

    with anyio.fail_after(TIMEOUT):
        async with raw_server(hang_up) as port:
            with pytest.raises(InvalidHandshake) as excinfo:
                async with trio_ws.open_websocket_url(
                    f"wss://127.0.0.1:{port}/", ssl=unverified_context()
                ):
                    pass
    assert_plain(excinfo.value)
    assert "TLS" in str(excinfo.value)


@pytest.mark.anyio
async def test_wss_over_a_unix_socket(
    tmp_path: Path, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "wss.sock")
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(ssl=server_context, unix_socket_path=path),
            trio_ws.open_websocket_url(
                "wss://localhost/", ssl=client_context, unix_socket_path=path
            ) as ws,
        ):
            await ws.send("tls over unix")
            assert await ws.recv() == "tls over unix"


# -- addresses, URLs, credentials --------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("ipv6")
async def test_ipv6_literal_url() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(host="::1", process_request=recorder) as server:
            async with trio_ws.open_websocket_url(f"ws://[::1]:{server.port}/v6") as ws:
                await ws.send("six")
                assert await ws.recv() == "six"
                assert ws.remote_address[:2] == ("::1", server.port)
            async with trio_ws.open_websocket("::1", server.port, "/v6b") as ws:
                pass
    assert [r.host for r in recorder.requests] == [f"[::1]:{server.port}"] * 2
    assert recorder.paths == ["/v6", "/v6b"]


@pytest.mark.anyio
async def test_query_string_reaches_the_server() -> None:
    seen: list[tuple[str, str, str]] = []

    async def handler(ws: WebSocketConnection) -> None:
        assert ws.request is not None
        seen.append((ws.request.path, ws.request.resource, ws.request.query))

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/search?q=caf\u00e9 au lait&page=2"
            async with trio_ws.open_websocket_url(url) as ws:
                await ws.wait_closed()
    path = "/search?q=caf%C3%A9%20au%20lait&page=2"
    assert seen == [(path, "/search", "q=caf%C3%A9%20au%20lait&page=2")]


@pytest.mark.anyio
async def test_credentials_in_the_url_send_basic_authorization() -> None:
    def check(request: Request) -> Response | None:
        expected = "Basic " + base64.b64encode(b"alice:p@ss word").decode()
        if request.headers.get("Authorization") != expected:
            return make_response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return None

    recorder = Recorder(check)
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            url = f"ws://alice:p%40ss%20word@127.0.0.1:{server.port}/private"
            async with trio_ws.open_websocket_url(url) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(f"ws://alice:wrong@127.0.0.1:{server.port}/"):
                    pass
    assert excinfo.value.response.status_code == 401
    assert excinfo.value.response.headers["WWW-Authenticate"] == 'Basic realm="x"'


@pytest.mark.anyio
async def test_an_explicit_authorization_header_wins_over_url_credentials() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            url = f"ws://alice:secret@127.0.0.1:{server.port}/"
            headers = {"Authorization": "Bearer token"}
            async with trio_ws.open_websocket_url(url, additional_headers=headers):
                pass
    assert recorder.requests[0].headers.get_all("Authorization") == ["Bearer token"]


@pytest.mark.anyio
async def test_unix_socket_path_on_client_and_server(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder, unix_socket_path=path) as server:
            assert server.listeners
            async with trio_ws.open_websocket_url(
                "ws://example.com/over-unix", unix_socket_path=path
            ) as ws:
                await ws.send("local")
                assert await ws.recv() == "local"
    assert recorder.paths == ["/over-unix"]
    assert recorder.requests[0].host == "example.com"


# -- open_timeout ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_open_timeout_on_a_server_that_never_answers(scheme: str) -> None:
    with anyio.fail_after(TIMEOUT), silent_listener() as port:
        url = f"{scheme}://127.0.0.1:{port}/"
        ssl_option = unverified_context() if scheme == "wss" else None
        with pytest.raises(TimeoutError) as excinfo:
            async with trio_ws.open_websocket_url(url, ssl=ssl_option, open_timeout=0.1):
                pass
    assert_plain(excinfo.value)


@pytest.mark.trio
async def test_open_timeout_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    with silent_listener() as port:
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/", open_timeout=30):
                pass
        assert trio.current_time() - start == pytest.approx(30)


@contextmanager
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full and never drained: the kernel
    drops further SYNs, so connecting to it hangs in the TCP handshake."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as server:
        port: int = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(2)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.anyio
async def test_open_timeout_covers_a_tcp_connect_that_hangs() -> None:
    with (
        anyio.fail_after(TIMEOUT),
        full_backlog() as port,
        pytest.raises(TimeoutError) as excinfo,
    ):
        async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/", open_timeout=0.1):
            pass
    assert_plain(excinfo.value)


@pytest.mark.trio
async def test_a_hanging_connect_times_out_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with full_backlog() as port:
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/", open_timeout=30):
                pass
        assert trio.current_time() - start == pytest.approx(30)


@pytest.mark.anyio
async def test_a_client_socket_sends_without_delay() -> None:
    """Connecting to an IP address skips anyio.connect_tcp, not TCP_NODELAY:
    small frames must not wait for Nagle's algorithm."""
    with anyio.fail_after(TIMEOUT):
        async with serving() as server:
            for host in ("127.0.0.1", "localhost"):
                url = f"ws://{host}:{server.port}/"
                async with trio_ws.open_websocket_url(url) as ws:
                    sock = ws._stream.extra(anyio.abc.SocketAttribute.raw_socket)
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.anyio
async def test_open_timeout_none_waits_for_a_slow_server() -> None:
    async def slow(stream: anyio.abc.SocketStream) -> None:
        request = await read_request(stream)
        await stream.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        await anyio.sleep(0.05)
        await stream.send(switching(request).partition(b"\r\n")[2])
        await stream.receive()

    with anyio.fail_after(TIMEOUT):
        async with (
            raw_server(slow) as port,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{port}/", open_timeout=None, close_timeout=0
            ) as ws,
        ):
            assert ws.state is State.OPEN


# -- redirects ----------------------------------------------------------------------


def redirect(status: int, location: str) -> Response:
    return make_response(status, headers={"Location": location})


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", ["relative", "absolute", "http", "sibling"])
async def test_redirects_are_followed(status: int, kind: str) -> None:
    def answer(request: Request) -> Response | None:
        if request.path == "/old/place":
            locations = {
                "relative": "/new?x=1",
                "absolute": f"ws://127.0.0.1:{port}/new?x=1",
                "http": f"http://127.0.0.1:{port}/new?x=1",
                "sibling": "../new?x=1",
            }
            return redirect(status, locations[kind])
        return None

    recorder = Recorder(answer)
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            port = server.port
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/old/place") as ws:
                assert ws.request is not None
                assert ws.request.path == "/new?x=1"
                await ws.send("arrived")
                assert await ws.recv() == "arrived"
    assert recorder.paths == ["/old/place", "/new?x=1"]


@pytest.mark.anyio
async def test_redirect_to_another_server() -> None:
    final = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=final) as target:
            location = f"ws://127.0.0.1:{target.port}/landing"
            first = Recorder(lambda request: redirect(302, location))
            async with (
                serving(process_request=first) as server,
                trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
            ):
                assert ws.remote_address[1] == target.port
    assert first.paths == ["/"]
    assert final.paths == ["/landing"]


@pytest.mark.anyio
async def test_a_redirect_loop_ends_after_max_redirects() -> None:
    recorder = Recorder(lambda request: redirect(302, "/loop"))
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            url = f"ws://127.0.0.1:{server.port}/loop"
            with pytest.raises(InvalidHandshake, match="more than 3 redirects") as excinfo:
                async with trio_ws.open_websocket_url(url, max_redirects=3):
                    pass
    assert_plain(excinfo.value)
    assert not isinstance(excinfo.value, InvalidStatus)
    assert recorder.paths == ["/loop"] * 4


@pytest.mark.anyio
async def test_max_redirects_zero_follows_none() -> None:
    recorder = Recorder(lambda request: redirect(301, "/elsewhere"))
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            with pytest.raises(InvalidHandshake, match="more than 0 redirects"):
                async with trio_ws.open_websocket_url(
                    f"ws://127.0.0.1:{server.port}/", max_redirects=0
                ):
                    pass
    assert recorder.paths == ["/"]


@pytest.mark.anyio
async def test_redirect_from_wss_to_ws_is_refused(server_context: ssl.SSLContext) -> None:
    plain = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=plain) as plain_server:
            location = f"ws://127.0.0.1:{plain_server.port}/downgraded"
            secure = Recorder(lambda request: redirect(302, location))
            async with serving(ssl=server_context, process_request=secure) as server:
                with pytest.raises(InvalidURI, match="wss:// to ws://") as excinfo:
                    async with trio_ws.open_websocket_url(
                        f"wss://127.0.0.1:{server.port}/", ssl=unverified_context()
                    ):
                        pass
    assert_plain(excinfo.value)
    assert secure.paths == ["/"]
    assert plain.paths == []  # never contacted


@pytest.mark.anyio
async def test_redirect_within_wss_keeps_tls(server_context: ssl.SSLContext) -> None:
    def answer(request: Request) -> Response | None:
        return redirect(307, "/moved") if request.path == "/" else None

    recorder = Recorder(answer)
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(ssl=server_context, process_request=recorder) as server,
            trio_ws.open_websocket_url(
                f"wss://127.0.0.1:{server.port}/", ssl=unverified_context()
            ) as ws,
        ):
            await ws.send("still secret")
            assert await ws.recv() == "still secret"
    assert recorder.paths == ["/", "/moved"]


@pytest.mark.anyio
async def test_redirect_to_a_non_websocket_url_is_invalid_uri() -> None:
    recorder = Recorder(lambda request: redirect(302, "ftp://127.0.0.1/file"))
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            with pytest.raises(InvalidURI):
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/"):
                    pass


@pytest.mark.anyio
async def test_a_3xx_without_location_is_invalid_status() -> None:
    recorder = Recorder(lambda request: make_response(302, "no location"))
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/"):
                    pass
    assert excinfo.value.response.status_code == 302
    assert recorder.paths == ["/"]


@pytest.mark.anyio
async def test_credentials_follow_a_redirect_to_the_same_origin_only() -> None:
    def authorization(request: Request) -> str | None:
        return request.headers.get("Authorization")

    target = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=target) as other:

            def answer(request: Request) -> Response | None:
                if request.path == "/same":
                    return redirect(302, "/landing")
                if request.path == "/other":
                    return redirect(302, f"ws://127.0.0.1:{other.port}/landing")
                return None

            source = Recorder(answer)
            async with serving(process_request=source) as server:
                base = f"ws://alice:secret@127.0.0.1:{server.port}"
                async with trio_ws.open_websocket_url(f"{base}/same"):
                    pass
                async with trio_ws.open_websocket_url(f"{base}/other"):
                    pass
    expected = "Basic " + base64.b64encode(b"alice:secret").decode()
    assert [authorization(r) for r in source.requests] == [expected, expected, expected]
    assert [authorization(r) for r in target.requests] == [None]


# -- refusals and handshake failures ----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
async def test_an_http_error_is_invalid_status_with_the_whole_response(status: int) -> None:
    def refuse(request: Request) -> Response:
        return make_response(status, f"nope: {status}", headers={"X-Why": "because"})

    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=Recorder(refuse)) as server:
            with pytest.raises(InvalidStatus) as excinfo:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/"):
                    pass
    error = excinfo.value
    assert_plain(error)
    assert error.response.status_code == status
    assert error.response.headers["X-Why"] == "because"
    assert error.response.body == f"nope: {status}".encode()
    assert f"HTTP {status}" in str(error)


@pytest.mark.anyio
async def test_an_http_error_is_raised_from_connect_websocket_url_too() -> None:
    recorder = Recorder(lambda request: make_response(404))
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server, anyio.create_task_group() as tg:
            with pytest.raises(InvalidStatus):
                await trio_ws.connect_websocket_url(tg, f"ws://127.0.0.1:{server.port}/")


async def wrong_accept(stream: anyio.abc.SocketStream) -> None:
    request = await read_request(stream)
    await stream.send(switching(request, accept=accept_key("AAAAAAAAAAAAAAAAAAAAAA==")))


async def no_upgrade_header(stream: anyio.abc.SocketStream) -> None:
    request = await read_request(stream)
    response = switching(request).replace(b"Upgrade: websocket\r\n", b"")
    await stream.send(response)


async def unoffered_subprotocol(stream: anyio.abc.SocketStream) -> None:
    request = await read_request(stream)
    await stream.send(switching(request, "Sec-WebSocket-Protocol: surprise"))


async def unoffered_extension(stream: anyio.abc.SocketStream) -> None:
    request = await read_request(stream)
    await stream.send(switching(request, "Sec-WebSocket-Extensions: permessage-deflate"))


async def garbage(stream: anyio.abc.SocketStream) -> None:
    await read_request(stream)
    await stream.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


async def hang_up_after_request(stream: anyio.abc.SocketStream) -> None:
    await read_request(stream)


async def hang_up_mid_response(stream: anyio.abc.SocketStream) -> None:
    await read_request(stream)
    await stream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("respond", "error", "text"),
    [
        (wrong_accept, InvalidHeader, "Sec-WebSocket-Accept"),
        (no_upgrade_header, InvalidHeader, "Upgrade"),
        (unoffered_subprotocol, NegotiationError, "surprise"),
        (unoffered_extension, NegotiationError, "permessage-deflate"),
        (garbage, InvalidHandshake, "invalid HTTP response"),
        (hang_up_after_request, InvalidHandshake, "closed before"),
        (hang_up_mid_response, InvalidHandshake, "closed in the middle"),
    ],
)
async def test_handshake_failures_are_invalid_handshake_subclasses(
    respond: RawHandler, error: type[InvalidHandshake], text: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with raw_server(respond) as port:
            with pytest.raises(error) as excinfo:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/", compression=None):
                    pass
    assert_plain(excinfo.value)
    assert not isinstance(excinfo.value, InvalidStatus)
    assert text in str(excinfo.value)


@pytest.mark.anyio
async def test_frames_sent_right_after_the_101_are_not_lost() -> None:
    async def eager(stream: anyio.abc.SocketStream) -> None:
        request = await read_request(stream)
        # The 101 and a first text frame "hi" in one write.
        await stream.send(switching(request) + b"\x81\x02hi")
        await stream.receive()

    with anyio.fail_after(TIMEOUT):
        async with (
            raw_server(eager) as port,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{port}/", compression=None, close_timeout=0
            ) as ws,
        ):
            assert await ws.recv() == "hi"


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_connection_refused_is_a_plain_oserror(host: str) -> None:
    with anyio.fail_after(TIMEOUT), refused_port() as port:
        with pytest.raises(OSError) as excinfo:  # noqa: PT011 - the cause is checked below
            async with trio_ws.open_websocket_url(f"ws://{host}:{port}/"):
                pass
        assert_plain(excinfo.value)
        assert was_refused(excinfo.value)
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError) as excinfo:  # noqa: PT011 - the cause is checked below
                await trio_ws.connect_websocket_url(tg, f"ws://{host}:{port}/")
        assert_plain(excinfo.value)
        assert was_refused(excinfo.value)


@pytest.mark.anyio
async def test_a_connect_to_an_ip_gives_a_ready_socket_stream() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with anyio.fail_after(TIMEOUT):
            stream = await _connect_ip(socket.AF_INET, "127.0.0.1", port)
        async with stream:
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            assert sock.gettimeout() == 0  # non-blocking
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert stream.extra(anyio.abc.SocketAttribute.remote_address) == ("127.0.0.1", port)


def test_a_connect_in_progress_is_done_once_the_socket_has_a_peer() -> None:
    with socket.socket() as listener, socket.socket() as sock:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not _connected(sock)
        sock.setblocking(False)
        sock.connect_ex(listener.getsockname())
        select.select([], [sock], [], TIMEOUT)  # writable: the connect is over
        assert _connected(sock)


def was_refused(exc: BaseException | None) -> bool:
    """Whether ConnectionRefusedError is ``exc`` or among its causes."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(was_refused(inner) for inner in exc.exceptions)
    return exc is not None and was_refused(exc.__cause__)


@pytest.mark.anyio
async def test_an_exception_in_the_block_propagates_unchanged() -> None:
    class Oops(Exception):
        pass

    closes: list[int | None] = []
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.wait_closed()
        closes.append(ws.close_code)
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            with pytest.raises(Oops) as excinfo:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/"):
                    raise Oops
            await done.wait()
    assert type(excinfo.value) is Oops
    assert closes == [1011]


@pytest.mark.anyio
async def test_cancelling_the_block_closes_with_1001() -> None:
    closes: list[int | None] = []
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.wait_closed()
        closes.append(ws.close_code)
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            with anyio.CancelScope() as scope:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    scope.cancel()
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
            assert ws.state is State.CLOSED
            await done.wait()
    assert closes == [1001]


@pytest.mark.anyio
async def test_a_server_that_never_answers_the_close_is_left_after_close_timeout() -> None:
    # Over real sockets, on both backends (on asyncio the reader waits on the
    # protocol without a scope of its own, and a timer ends the wait).
    seen = bytearray()
    hung_up = anyio.Event()

    async def respond(stream: anyio.abc.SocketStream) -> None:
        await stream.send(switching(await read_request(stream)))
        try:
            while True:  # read the close frame, never answer it
                seen.extend(await stream.receive())
        except anyio.EndOfStream:
            hung_up.set()

    with anyio.fail_after(TIMEOUT):
        async with raw_server(respond) as port:
            async with trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{port}/", close_timeout=0.2, ping_interval=None
            ) as ws:
                pass
            await hung_up.wait()  # we closed TCP ourselves, in the end
    assert ws.state is State.CLOSED
    assert ws.close_code == 1006  # no close frame came back
    assert seen[0] == 0x88  # our close frame went out
    with pytest.raises(ConnectionClosedError, match="no close frame received"):
        await ws.recv()


@pytest.mark.anyio
async def test_a_peer_that_never_answers_pings_fails_with_1011_over_sockets() -> None:
    # On both backends over real sockets: on asyncio's protocol path the
    # first ping comes from a timer-started heartbeat.
    pings = 0

    async def respond(stream: anyio.abc.SocketStream) -> None:
        nonlocal pings
        await stream.send(switching(await read_request(stream)))
        while True:  # raw_server ends this at EOF
            pings += (await stream.receive()).count(b"\x89")  # a masked ping's first byte

    with anyio.fail_after(TIMEOUT):
        async with (
            raw_server(respond) as port,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{port}/", ping_interval=0.02, ping_timeout=0.05, close_timeout=0.1
            ) as ws,
        ):
            with pytest.raises(ConnectionClosedError, match="keepalive ping timeout"):
                await ws.recv()
    assert ws.close_code == 1006  # no close frame came back
    assert ws.state is State.CLOSED
    assert pings >= 1


# -- options on the wire -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("offered", "supported", "expected"),
    [
        (["chat.v2", "chat.v1"], ["chat.v1", "chat.v2"], "chat.v1"),
        (["chat.v1"], ["chat.v1"], "chat.v1"),
        (["chat.v3"], ["chat.v1"], None),
        ([], ["chat.v1"], None),
        (["chat.v1"], [], None),
    ],
)
async def test_subprotocol_negotiation(
    offered: list[str], supported: list[str], expected: str | None
) -> None:
    on_server: list[str | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        on_server.append(ws.subprotocol)

    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler, subprotocols=supported, process_request=recorder) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", subprotocols=offered
            ) as ws,
        ):
            assert ws.subprotocol == expected
            await ws.wait_closed()
    assert on_server == [expected]
    sent = recorder.requests[0].headers.get("Sec-WebSocket-Protocol")
    assert sent == (", ".join(offered) if offered else None)


@pytest.mark.anyio
async def test_additional_headers_user_agent_and_origin_reach_the_server() -> None:
    recorder = Recorder()
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(
                url,
                additional_headers={"X-Token": "abc", "Cookie": "a=1; b=2"},
                user_agent_header="my-agent/1.0",
                origin="https://app.example",
            ):
                pass
            async with trio_ws.open_websocket_url(
                url, additional_headers=[("X-Multi", "1"), ("X-Multi", "2")]
            ):
                pass
            async with trio_ws.open_websocket_url(url, user_agent_header=None):
                pass
            headers = trio_ws.Headers([("X-From-Headers", "yes")])
            async with trio_ws.open_websocket_url(url, additional_headers=headers):
                pass
    first, second, third, fourth = (request.headers for request in recorder.requests)
    assert first["X-Token"] == "abc"
    assert recorder.requests[0].cookies == {"a": "1", "b": "2"}
    assert first["User-Agent"] == "my-agent/1.0"
    assert first["Origin"] == "https://app.example"
    assert second.get_all("X-Multi") == ["1", "2"]
    assert second["User-Agent"] == USER_AGENT
    assert "Origin" not in second
    assert "User-Agent" not in third
    assert fourth["X-From-Headers"] == "yes"


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "deflate", trio_ws.DeflateConfig()])
async def test_compression_option(compression: str | trio_ws.DeflateConfig | None) -> None:
    on_server: list[bool] = []

    async def handler(ws: WebSocketConnection) -> None:
        on_server.append(ws.extension is not None)
        await echo(ws)

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", compression=compression
            ) as ws,
        ):
            await ws.send("x" * 10_000)
            assert await ws.recv() == "x" * 10_000
            assert (ws.extension is not None) is (compression is not None)
    assert on_server == [compression is not None]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("client_compression", "offer", "response", "client_window"),
    [
        # Both defaults: a 4 KiB window each way.
        (
            "deflate",
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            12,
        ),
        # A client that lets the server choose, as browsers do, keeps its own.
        (
            trio_ws.DeflateConfig(),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12",
            15,
        ),
    ],
)
async def test_default_compression_uses_small_windows(
    client_compression: str | trio_ws.DeflateConfig, offer: str, response: str, client_window: int
) -> None:
    windows: list[tuple[int, int]] = []
    message = '{"id": 1, "values": [1, 2, 3]}' * 1000

    async def handler(ws: WebSocketConnection) -> None:
        assert ws.extension is not None
        windows.append((ws.extension._local_wbits, ws.extension._remote_wbits))
        await echo(ws)

    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", compression=client_compression
            ) as ws,
        ):
            await ws.send(message)
            assert await ws.recv() == message
            assert ws.request.headers["Sec-WebSocket-Extensions"] == offer
            assert ws.response.headers["Sec-WebSocket-Extensions"] == response
            assert ws.extension is not None
            assert (ws.extension._local_wbits, ws.extension._remote_wbits) == (client_window, 12)
    assert windows == [(12, client_window)]


@pytest.mark.anyio
async def test_server_without_compression_accepts_a_client_offering_it() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(compression=None) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            assert ws.extension is None
            await ws.send("plain")
            assert await ws.recv() == "plain"


@pytest.mark.anyio
async def test_max_size_limits_incoming_messages() -> None:
    seen_by_server: list[int | None] = []
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.send(b"x" * 100)
        await ws.wait_closed()
        seen_by_server.append(ws.close_code)
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", max_size=50
            ) as ws:
                assert ws.max_size == 50
                with pytest.raises(ConnectionClosedError) as excinfo:
                    await ws.recv()
            await done.wait()
    assert excinfo.value.sent is not None
    assert excinfo.value.sent.code == 1009
    assert seen_by_server == [1009]


@pytest.mark.anyio
async def test_connection_options_reach_the_connection() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/",
                max_size=None,
                max_queue=4,
                write_limit=1024,
                ping_interval=None,
                ping_timeout=None,
                close_timeout=3,
            ) as ws,
        ):
            assert (ws.max_size, ws.max_queue, ws.write_limit) == (None, 4, 1024)
            assert (ws.ping_interval, ws.ping_timeout, ws.close_timeout) == (None, None, 3)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"bogus_option": 1}, TypeError),
        ({"subprotocols": "chat"}, TypeError),
        ({"subprotocols": ["not a token"]}, ValueError),
        ({"compression": "gzip"}, ValueError),
        ({"compression": True}, ValueError),
        ({"open_timeout": 0}, ValueError),
        ({"open_timeout": -1}, ValueError),
        ({"max_redirects": -1}, ValueError),
        ({"max_size": 0}, ValueError),
        ({"max_size": "big"}, TypeError),
        ({"max_queue": -1}, ValueError),
        ({"write_limit": -1}, ValueError),
        ({"ping_interval": True}, TypeError),
        ({"ping_timeout": 0}, ValueError),
        ({"close_timeout": -1}, ValueError),
        ({"additional_headers": {"X-Evil": "a\r\nInjected: yes"}}, ValueError),
        ({"additional_headers": {"Bad Name": "x"}}, ValueError),
        ({"user_agent_header": "agent\nInjected: yes"}, ValueError),
        ({"origin": "https://x\r\n"}, ValueError),
    ],
)
def test_bad_options_raise_at_once(options: dict[str, Any], error: type[Exception]) -> None:
    """Before any I/O: the port is closed, so a late check would see OSError."""
    with refused_port() as port:
        url = f"ws://127.0.0.1:{port}/"
        with pytest.raises(error):
            trio_ws.open_websocket_url(url, **options)
        with pytest.raises(error):
            trio_ws.open_websocket("127.0.0.1", port, **options)
        with pytest.raises(error):
            trio_ws.open_reconnecting_websocket(url, **options)


@pytest.mark.anyio
async def test_bad_options_raise_before_connecting_websocket() -> None:
    with anyio.fail_after(TIMEOUT), refused_port() as port:
        async with anyio.create_task_group() as tg:
            with pytest.raises(TypeError):
                await trio_ws.connect_websocket_url(tg, f"ws://127.0.0.1:{port}/", bogus=1)
            with pytest.raises(ValueError, match="subprotocol"):
                await trio_ws.connect_websocket(tg, "127.0.0.1", port, subprotocols=["a b"])
            with pytest.raises(TypeError):
                await trio_ws.wrap_client_stream(tg, object(), "h")  # type: ignore[arg-type]  # the point


@pytest.mark.parametrize(
    ("url", "ssl_option"),
    [
        ("ws://127.0.0.1:1/", ssl.create_default_context()),
        ("ws://127.0.0.1:1/", True),
        ("wss://127.0.0.1:1/", False),
    ],
)
def test_ssl_that_contradicts_the_scheme_raises_value_error(
    url: str, ssl_option: ssl.SSLContext | bool
) -> None:
    with pytest.raises(ValueError, match=r"ssl|TLS"):
        trio_ws.open_websocket_url(url, ssl=ssl_option)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "ws://127.0.0.1/#fragment", "ws:///"])
def test_bad_urls_raise_invalid_uri_at_once(url: str) -> None:
    with pytest.raises(InvalidURI):
        trio_ws.open_websocket_url(url)


@pytest.mark.anyio
async def test_open_websocket_with_ssl_false_is_plain_ws() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            serving() as server,
            trio_ws.open_websocket("127.0.0.1", server.port, ssl=False) as ws,
        ):
            await ws.send("plain")
            assert await ws.recv() == "plain"


# -- create_connection ----------------------------------------------------------------


class TaggedConnection(WebSocketConnection):
    """A user subclass with an extra constructor argument."""

    def __init__(self, *args: Any, tag: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag


@pytest.mark.anyio
async def test_create_connection_subclass_on_client_and_server() -> None:
    tags: list[str] = []

    async def handler(ws: WebSocketConnection) -> None:
        assert isinstance(ws, TaggedConnection)
        tags.append(ws.tag)
        await echo(ws)

    server_factory = functools.partial(TaggedConnection, tag="server")
    client_factory = functools.partial(TaggedConnection, tag="client")
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(handler, create_connection=server_factory, max_size=1234) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", create_connection=client_factory, max_queue=3
            ) as ws,
        ):
            assert isinstance(ws, TaggedConnection)
            assert ws.tag == "client"
            assert ws.max_queue == 3  # options still reach the subclass
            await ws.send("tagged")
            assert await ws.recv() == "tagged"
    assert tags == ["server"]


# -- open_reconnecting_websocket ----------------------------------------------------


@pytest.mark.anyio
async def test_reconnecting_websocket_reconnects_after_the_server_drops_it() -> None:
    count = 0

    async def handler(ws: WebSocketConnection) -> None:
        nonlocal count
        count += 1
        await ws.send(f"hello {count}")
        # Returning closes the connection (1000): the client must reconnect.

    received: list[str | bytes] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_reconnecting_websocket(url, backoff_initial=0.01) as conns:
                async for ws in conns:
                    assert conns.connection is ws
                    async for message in ws:
                        received.append(message)
                    if conns.connections_opened == 3:
                        break
                assert conns.connections_opened == 3
    assert received == ["hello 1", "hello 2", "hello 3"]


@pytest.mark.anyio
async def test_reconnecting_websocket_closes_the_previous_connection() -> None:
    closes: list[int | None] = []
    both_closed = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await echo(ws)
        await ws.wait_closed()
        closes.append(ws.close_code)
        if len(closes) == 2:
            both_closed.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_reconnecting_websocket(url) as conns:
                first = await conns.__anext__()
                await first.send("one")
                assert await first.recv() == "one"
                second = await conns.__anext__()
                assert first.state is State.CLOSED
                assert first.close_code == 1000
                assert second is not first
                assert second.state is State.OPEN
                await second.send("two")
                assert await second.recv() == "two"
                assert conns.connections_opened == 2
            # Leaving the block closed the last one as well.
            assert state_of(second) is State.CLOSED
            await both_closed.wait()
    assert closes == [1000, 1000]


@pytest.mark.anyio
async def test_reconnecting_websocket_retries_5xx_and_raises_4xx_at_once() -> None:
    statuses = [503, 500, 502]

    def answer(request: Request) -> Response | None:
        if request.path == "/forbidden":
            return make_response(403)
        return make_response(statuses.pop(0)) if statuses else None

    recorder = Recorder(answer)
    with anyio.fail_after(TIMEOUT):
        async with serving(process_request=recorder) as server:
            url = f"ws://127.0.0.1:{server.port}"
            async with trio_ws.open_reconnecting_websocket(
                f"{url}/", backoff_initial=0.001, backoff_max=0.002
            ) as conns:
                ws = await conns.__anext__()
                await ws.send("finally")
                assert await ws.recv() == "finally"
                assert conns.connections_opened == 1
            assert recorder.paths == ["/"] * 4

            async with trio_ws.open_reconnecting_websocket(f"{url}/forbidden") as conns:
                with pytest.raises(InvalidStatus) as excinfo:
                    await conns.__anext__()
                assert conns.connections_opened == 0
    assert excinfo.value.response.status_code == 403
    assert recorder.paths.count("/forbidden") == 1


@pytest.mark.anyio
async def test_reconnecting_websocket_retries_a_server_that_hangs_up() -> None:
    hang_ups = 2

    async def flaky(stream: anyio.abc.SocketStream) -> None:
        nonlocal hang_ups
        request = await read_request(stream)
        if hang_ups:
            hang_ups -= 1
            return  # close without answering, as a restarting server might
        await stream.send(switching(request))
        await stream.receive()

    with anyio.fail_after(TIMEOUT):
        async with (
            raw_server(flaky) as port,
            trio_ws.open_reconnecting_websocket(
                f"ws://127.0.0.1:{port}/",
                backoff_initial=0.001,
                compression=None,
                close_timeout=0,
            ) as conns,
        ):
            ws = await conns.__anext__()
            assert ws.state is State.OPEN
    assert hang_ups == 0


@pytest.mark.anyio
async def test_reconnecting_websocket_reconnects_after_an_abrupt_drop() -> None:
    """The server's TCP connection vanishes without a close frame (1006)."""
    accepted = 0

    async def drop(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        request = await read_request(stream)
        await stream.send(switching(request) + b"\x81\x05" + f"drop{accepted}".encode())
        # Leaving closes the TCP connection: no close frame.

    received: list[str | bytes] = []
    errors: list[int] = []
    with anyio.fail_after(TIMEOUT):
        async with (
            raw_server(drop) as port,
            trio_ws.open_reconnecting_websocket(
                f"ws://127.0.0.1:{port}/", backoff_initial=0.001, compression=None
            ) as conns,
        ):
            async for ws in conns:
                try:
                    async for message in ws:
                        received.append(message)
                except ConnectionClosedError as exc:
                    errors.append(exc.code)
                if conns.connections_opened == 2:
                    break
    assert received == ["drop1", "drop2"]
    assert errors == [1006, 1006]


@pytest.mark.anyio
@pytest.mark.parametrize("outer_cancel", [False, True])
async def test_reconnecting_websocket_lets_the_blocks_exception_through(
    outer_cancel: bool,
) -> None:
    """With 1011 sent, as open_websocket_url does; and even when a scope
    around the block was cancelled too, the error is not swallowed."""

    class Oops(Exception):
        pass

    closes: list[int | None] = []
    done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.wait_closed()
        closes.append(ws.close_code)
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            with pytest.raises(Oops):  # noqa: PT012 - the raise is the point
                with anyio.CancelScope() as scope:
                    async with trio_ws.open_reconnecting_websocket(url) as conns:
                        await conns.__anext__()
                        if outer_cancel:
                            scope.cancel()
                        raise Oops
            await done.wait()
    assert closes == [1011]


def test_reconnecting_websocket_raises_invalid_uri_at_once() -> None:
    with pytest.raises(InvalidURI):
        trio_ws.open_reconnecting_websocket("http://127.0.0.1/")


@pytest.mark.trio
async def test_reconnecting_websocket_retries_refused_connections_with_backoff(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high  # the longest wait jitter allows

    monkeypatch.setattr(trio_ws.client.random, "uniform", uniform)  # type: ignore[attr-defined]  # the module, not the function
    caplog.set_level(logging.INFO, logger="trio_ws.client")
    with refused_port() as port:
        url = f"ws://127.0.0.1:{port}/"
        start = trio.current_time()
        async with trio_ws.open_reconnecting_websocket(
            url, backoff_initial=1.0, backoff_factor=2.0, backoff_max=5.0
        ) as conns:
            with trio.move_on_after(20):
                await conns.__anext__()
    # Waits of 1, 2, 4, 5, 5, 5... seconds: exponential, then capped.
    assert bounds[:5] == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]
    assert sum(high for _, high in bounds[:-1]) <= trio.current_time() - start
    assert sum("connection attempt" in r.getMessage() for r in caplog.records) == len(bounds)


@pytest.mark.trio
async def test_reconnecting_websocket_connects_once_the_server_appears(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def uniform(low: float, high: float) -> float:
        waits.append(high)
        return high

    monkeypatch.setattr(trio_ws.client.random, "uniform", uniform)  # type: ignore[attr-defined]  # the module, not the function
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]

    async with trio.open_nursery() as nursery:

        async def late_server() -> None:
            await trio.sleep(30)
            reserved.close()
            serve = functools.partial(
                trio_ws.serve_websocket, echo, "127.0.0.1", port, ping_interval=None
            )
            await nursery.start(serve)

        nursery.start_soon(late_server)
        # No timers but the backoff's: the autojump clock has nothing else to
        # skip to while real sockets do their work.
        async with trio_ws.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/",
            backoff_initial=1.0,
            backoff_factor=2.0,
            backoff_max=8.0,
            open_timeout=None,
            ping_interval=None,
        ) as conns:
            ws = await conns.__anext__()
            await ws.send("at last")
            assert await ws.recv() == "at last"
            assert conns.connections_opened == 1
        nursery.cancel_scope.cancel()
    # Attempts at t=0, 1, 3, 7, 15, 23 were refused; t=31 found the server.
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.trio
async def test_reconnecting_websocket_backs_off_after_short_lived_connections(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts and drops at once gets growing waits, not a storm;
    after a connection that lived backoff_max seconds the wait starts over."""
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr(trio_ws.client.random, "uniform", uniform)  # type: ignore[attr-defined]  # the module
    lifetimes = iter([0, 0, 0, 100, 0])

    async def handler(ws: WebSocketConnection) -> None:
        await trio.sleep(next(lifetimes))  # then returning closes it

    timers_off: dict[str, Any] = {"ping_interval": None, "open_timeout": None}
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(trio_ws.serve_websocket, **timers_off), handler, "127.0.0.1", 0
        )
        url = f"ws://127.0.0.1:{server.port}/"
        async with trio_ws.open_reconnecting_websocket(
            url, backoff_initial=1.0, backoff_factor=2.0, backoff_max=50.0, **timers_off
        ) as conns:
            async for ws in conns:
                await ws.wait_closed()
                if conns.connections_opened == 5:
                    break
        nursery.cancel_scope.cancel()
    # Three short-lived connections: 1, 2, 4 s; the fourth lived 100 s: none.
    assert bounds == [(0, 1.0), (0, 2.0), (0, 4.0)]
