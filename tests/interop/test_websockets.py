"""Interop with the ``websockets`` package (its asyncio implementation).

Both sides run in one asyncio event loop: trio_ws through anyio's asyncio
backend, websockets natively. Each test opens a pair over real TCP on
127.0.0.1, ``ours`` and ``theirs``, in both roles (``role`` names our side),
and asserts what *each* side observes: message content, close codes and
reasons, exception types, the extension negotiated, latencies.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.streams.stapled
import pytest
import trustme

import trio_ws
from tests.interop.peers import (
    LONG_PING,
    LONG_REASON,
    MAX_SIZE,
    SIZES,
    TIMEOUT,
    MiB,
    binary_payload,
    payload,
    require,
    text_payload,
    wait_until,
)
from trio_ws import DeflateConfig, WebSocketConnection

try:
    import websockets
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        ServerPerMessageDeflateFactory,
    )

    HAVE_WEBSOCKETS = True
except ImportError:  # pragma: no cover  # the peer is missing: require() reports it
    HAVE_WEBSOCKETS = False

Theirs = Any  # websockets' ClientConnection or ServerConnection

ROLES = ["our-server", "our-client"]
COMPRESSIONS = ["deflate", None]


@pytest.fixture(autouse=True)
def _websockets_peer() -> None:
    require(HAVE_WEBSOCKETS, "the websockets package")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """websockets runs on asyncio, so our side does too, in the same loop."""
    return ("asyncio", {"debug": True})


pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_context, client_context)`` from a throwaway CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


@asynccontextmanager
async def open_pair(
    role: str,
    *,
    compression: str | None = "deflate",
    ours: dict[str, Any] | None = None,
    theirs: dict[str, Any] | None = None,
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
) -> AsyncIterator[tuple[WebSocketConnection, Theirs]]:
    """Yield ``(ours, theirs)``, connected over TCP, ``role`` being ours.

    ``ours`` and ``theirs`` are extra options for each side; ``tls`` the
    server's and client's SSL contexts for ``wss://``. Both sides stay open
    until the block ends (a server handler waits for it), so a test closes
    either side when and how it wants.
    """
    our_options: dict[str, Any] = {"compression": compression, "max_size": MAX_SIZE}
    our_options.update(ours or {})
    their_options: dict[str, Any] = {"compression": compression, "max_size": MAX_SIZE}
    their_options.update(theirs or {})
    scheme = "ws"
    if tls is not None:
        scheme = "wss"
        server_context, client_context = tls
        if role == "our-server":
            our_options["ssl"], their_options["ssl"] = server_context, client_context
        else:
            our_options["ssl"], their_options["ssl"] = client_context, server_context
    accepted: list[Any] = []
    arrived = anyio.Event()
    release = anyio.Event()

    async def handler(connection: Any) -> None:
        accepted.append(connection)
        arrived.set()
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        if role == "our-server":
            async with anyio.create_task_group() as tg:
                server = await tg.start(_serve_ours, handler, our_options, name="trio_ws server")
                async with connect(
                    f"{scheme}://127.0.0.1:{server.port}/interop", proxy=None, **their_options
                ) as client:
                    await arrived.wait()
                    try:
                        yield accepted[0], client
                    finally:
                        release.set()
                tg.cancel_scope.cancel()
        else:
            async with serve(handler, "127.0.0.1", 0, **their_options) as their_server:
                port = next(iter(their_server.sockets)).getsockname()[1]
                async with trio_ws.open_websocket_url(
                    f"{scheme}://127.0.0.1:{port}/interop", **our_options
                ) as ws:
                    await arrived.wait()
                    try:
                        yield ws, accepted[0]
                    finally:
                        release.set()


async def _serve_ours(
    handler: Callable[[WebSocketConnection], Any],
    options: dict[str, Any],
    *,
    task_status: anyio.abc.TaskStatus[trio_ws.WebSocketServer],
) -> None:
    await trio_ws.serve_websocket(handler, "127.0.0.1", 0, task_status=task_status, **options)


async def collect(ws: WebSocketConnection, into: list[str | bytes]) -> None:
    """``async for`` over ``ws``, appending each message to ``into``."""
    async for message in ws:
        into.append(message)


def their_extensions(theirs: Theirs) -> list[str]:
    return [extension.name for extension in theirs.protocol.extensions]


# -- messages ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("role", ROLES)
async def test_messages_both_ways_at_every_size(role: str, compression: str | None) -> None:
    """Text and binary, 0 B to 16 MiB, each way; permessage-deflate negotiated
    exactly when both sides want it."""
    async with open_pair(role, compression=compression) as (ours, theirs):
        assert (ours.extension is not None) is (compression is not None)
        expected = ["permessage-deflate"] if compression else []
        assert their_extensions(theirs) == expected
        for kind in ("text", "binary"):
            for size in SIZES:
                message = payload(kind, size)
                await ours.send(message)
                assert await theirs.recv() == message, (kind, size)
                await theirs.send(message)
                assert await ours.recv() == message, (kind, size)


@pytest.mark.parametrize(
    ("our_config", "their_params", "agreed"),
    [
        pytest.param(
            DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True),
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            id="no-context-takeover",
        ),
        pytest.param(
            DeflateConfig(server_max_window_bits=10, client_max_window_bits=9),
            {"server_max_window_bits": 10, "client_max_window_bits": 9},
            {"server_max_window_bits": 10, "client_max_window_bits": 9},
            id="window-bits",
        ),
    ],
)
@pytest.mark.parametrize("role", ROLES)
async def test_deflate_parameters_negotiated(
    role: str,
    our_config: DeflateConfig,
    their_params: dict[str, Any],
    agreed: dict[str, Any],
) -> None:
    """Non-default permessage-deflate parameters agree on both sides, and
    repeated messages (which context takeover would shrink) survive."""
    if role == "our-server":
        factory: Any = ClientPerMessageDeflateFactory(**their_params)
    else:
        factory = ServerPerMessageDeflateFactory(**their_params)
    async with open_pair(
        role,
        compression=None,
        ours={"compression": our_config},
        theirs={"extensions": [factory]},
    ) as (ours, theirs):
        assert ours.extension is not None
        for name, value in agreed.items():
            assert getattr(ours.extension, name) == value, name
        (their_extension,) = theirs.protocol.extensions
        # websockets names its attributes from its own point of view.
        local, remote = ("server", "client") if role == "our-client" else ("client", "server")
        their_view = {
            f"{local}_no_context_takeover": their_extension.local_no_context_takeover,
            f"{remote}_no_context_takeover": their_extension.remote_no_context_takeover,
            f"{local}_max_window_bits": their_extension.local_max_window_bits,
            f"{remote}_max_window_bits": their_extension.remote_max_window_bits,
        }
        for name, value in agreed.items():
            assert their_view[name] == value, name
        message = text_payload(70_000)
        for _ in range(3):
            await ours.send(message)
            assert await theirs.recv() == message
            await theirs.send(message)
            assert await ours.recv() == message


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("role", ROLES)
async def test_fragmented_messages_both_ways(role: str, compression: str | None) -> None:
    """Iterables of fragments, sync and async, arrive as one message; our
    fragments reach websockets as separate frames."""
    text_fragments = ["frag", "mënted ", "", "tëxt 🙂"]
    binary_fragments = [b"\x00\x01", b"", bytes(range(256)) * 300, b"\xff"]

    async def async_fragments() -> AsyncIterator[str]:
        for fragment in text_fragments:
            await anyio.lowlevel.checkpoint()
            yield fragment

    async with open_pair(role, compression=compression) as (ours, theirs):
        # websockets -> trio_ws
        await theirs.send(text_fragments)
        assert await ours.recv() == "".join(text_fragments)
        await theirs.send(binary_fragments)
        assert await ours.recv() == b"".join(binary_fragments)
        await theirs.send(async_fragments())
        assert await ours.recv() == "".join(text_fragments)
        # trio_ws -> websockets, frame by frame
        await ours.send(text_fragments)
        frames = [frame async for frame in theirs.recv_streaming()]
        assert "".join(frames) == "".join(text_fragments)
        assert len(frames) >= len([f for f in text_fragments if f])
        await ours.send(binary_fragments)
        assert await theirs.recv() == b"".join(binary_fragments)
        await ours.send(async_fragments())
        assert await theirs.recv() == "".join(text_fragments)
        # A large fragmented message, each fragment bigger than write_limit.
        big = [binary_payload(100_000)] * 20
        await ours.send(big)
        assert await theirs.recv() == b"".join(big)
        await theirs.send(big)
        assert await ours.recv() == b"".join(big)


@pytest.mark.parametrize("role", ROLES)
async def test_pings_between_fragments_both_ways(role: str) -> None:
    """Control frames may come between the frames of a fragmented message
    (RFC 6455 §5.4): each side answers the other's pings mid-message and
    still assembles the message."""
    fragments = [binary_payload(50_000)[i : i + 10_000] for i in range(0, 50_000, 10_000)]

    async with open_pair(role) as (ours, theirs):
        waiters: list[Any] = []

        async def ours_with_pings() -> AsyncIterator[bytes]:
            for i, fragment in enumerate(fragments):
                yield fragment
                waiters.append(await ours.ping(f"ours {i}"))

        async def theirs_with_pings() -> AsyncIterator[bytes]:
            for i, fragment in enumerate(fragments):
                yield fragment
                waiters.append(await theirs.ping(f"theirs {i}"))

        await ours.send(ours_with_pings())
        assert await theirs.recv() == b"".join(fragments)
        await theirs.send(theirs_with_pings())
        assert await ours.recv() == b"".join(fragments)
        latencies = [await waiter for waiter in waiters]
        assert len(latencies) == 2 * len(fragments)
        assert all(latency > 0 for latency in latencies)


# -- pings ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_pings_both_ways_measure_latency(role: str) -> None:
    """Explicit pings each way (125-byte payloads, the most allowed) are
    answered and timed; so are both sides' keepalive pings."""
    async with open_pair(role, ours={"ping_interval": 0.05}, theirs={"ping_interval": 0.05}) as (
        ours,
        theirs,
    ):
        waiter = await ours.ping(LONG_PING.upper())
        latency = await waiter
        assert latency > 0
        their_waiter = await theirs.ping(LONG_PING)
        their_latency = await their_waiter
        assert their_latency > 0
        # Keepalive: both sides ping every 50 ms and see the pongs.
        ours.latency = 0.0
        theirs.latency = 0.0
        await wait_until(lambda: ours.latency > 0 and theirs.latency > 0)
        assert ours.state is trio_ws.State.OPEN
        # Messages still flow after the pings.
        await ours.send("still here")
        assert await theirs.recv() == "still here"


# -- closing ------------------------------------------------------------------------------

CLOSE_CODES = [1000, 1001, 4000]


@pytest.mark.parametrize("code", CLOSE_CODES)
@pytest.mark.parametrize("role", ROLES)
async def test_we_close_with_code_and_reason(role: str, code: int) -> None:
    """Our aclose(code, reason) reaches websockets intact; its echo reaches us."""
    reason = LONG_REASON if code == 4000 else f"trio_ws says bye ({role})"
    async with open_pair(role) as (ours, theirs):
        await ours.aclose(code, reason)
        assert ours.state is trio_ws.State.CLOSED
        assert ours.close_code == code  # websockets echoes the code
        with pytest.raises(websockets.ConnectionClosed) as their_error:
            await theirs.recv()
        assert isinstance(
            their_error.value,
            websockets.ConnectionClosedOK if code < 4000 else websockets.ConnectionClosedError,
        )
        assert their_error.value.rcvd is not None
        assert (their_error.value.rcvd.code, their_error.value.rcvd.reason) == (code, reason)
        assert their_error.value.sent is not None
        assert their_error.value.sent.code == code
        assert their_error.value.rcvd_then_sent is True
        assert (theirs.close_code, theirs.close_reason) == (code, reason)
        ok = trio_ws.ConnectionClosedOK if code < 4000 else trio_ws.ConnectionClosedError
        with pytest.raises(ok) as our_error:
            await ours.recv()
        assert our_error.value.sent is not None
        assert (our_error.value.sent.code, our_error.value.sent.reason) == (code, reason)
        assert our_error.value.rcvd_then_sent is False


@pytest.mark.parametrize("code", CLOSE_CODES)
@pytest.mark.parametrize("role", ROLES)
async def test_they_close_with_code_and_reason(role: str, code: int) -> None:
    """websockets' close(code, reason) reaches us intact, ends ``async for``
    quietly only for 1000/1001, and our echo reaches websockets."""
    reason = LONG_REASON if code == 4000 else f"websockets says bye ({role})"
    async with open_pair(role) as (ours, theirs):
        await theirs.send("last words")
        await theirs.close(code, reason)
        assert theirs.close_code == code  # our echo
        received: list[str | bytes] = []
        if code < 4000:
            await collect(ours, received)  # ends quietly
            with pytest.raises(trio_ws.ConnectionClosedOK) as ok_error:
                await ours.recv()
            error: trio_ws.ConnectionClosed = ok_error.value
        else:
            with pytest.raises(trio_ws.ConnectionClosedError) as failed:
                await collect(ours, received)
            error = failed.value
        assert received == ["last words"]
        assert (ours.close_code, ours.close_reason) == (code, reason)
        assert error.rcvd is not None
        assert (error.rcvd.code, error.rcvd.reason) == (code, reason)
        assert error.sent is not None
        assert error.sent.code == code
        assert error.rcvd_then_sent is True
        await ours.wait_closed()
        assert ours.state is trio_ws.State.CLOSED


@pytest.mark.parametrize("closer", ["ours", "theirs"])
@pytest.mark.parametrize("role", ROLES)
async def test_tls_messages_and_closing(
    role: str, closer: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Over wss://: compressed messages each way, then a closing handshake
    started by either side, with its code and reason intact."""
    async with open_pair(role, tls=tls) as (ours, theirs):
        assert ours.extension is not None
        for message in (text_payload(MiB), binary_payload(MiB)):
            await ours.send(message)
            assert await theirs.recv() == message
            await theirs.send(message)
            assert await ours.recv() == message
        if closer == "ours":
            await ours.aclose(4000, "bye over TLS")
            with pytest.raises(websockets.ConnectionClosedError) as their_error:
                await theirs.recv()
            assert their_error.value.rcvd is not None
            assert their_error.value.rcvd.code == 4000
            assert their_error.value.rcvd.reason == "bye over TLS"
        else:
            await theirs.close(4000, "bye over TLS")
            with pytest.raises(trio_ws.ConnectionClosedError) as our_error:
                await ours.recv()
            assert our_error.value.rcvd is not None
            assert our_error.value.rcvd.code == 4000
            assert our_error.value.rcvd.reason == "bye over TLS"
        await ours.wait_closed()
        await theirs.wait_closed()
        assert ours.close_code == 4000
        assert theirs.close_code == 4000


async def test_server_shutdown_closes_with_going_away() -> None:
    """Stopping our server (WebSocketServer.aclose) closes clients with 1001."""
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            server = await tg.start(_serve_ours, _wait_forever, {})
            async with connect(f"ws://127.0.0.1:{server.port}/", proxy=None) as client:
                await server.aclose()
                with pytest.raises(websockets.ConnectionClosedOK) as error:
                    await client.recv()
                assert error.value.rcvd is not None
                assert error.value.rcvd.code == 1001


async def test_handler_error_closes_with_internal_error() -> None:
    """A handler that raises closes the websockets client with 1011."""

    async def failing(ws: WebSocketConnection) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            server = await tg.start(_serve_ours, failing, {})
            async with connect(f"ws://127.0.0.1:{server.port}/", proxy=None) as client:
                await client.send("go")
                with pytest.raises(websockets.ConnectionClosedError) as error:
                    await client.recv()
                assert error.value.rcvd is not None
                assert error.value.rcvd.code == 1011
            tg.cancel_scope.cancel()


async def _wait_forever(ws: WebSocketConnection) -> None:
    await ws.wait_closed()


@pytest.mark.parametrize("role", ROLES)
async def test_they_drop_tcp(role: str) -> None:
    """websockets aborts its transport: we see 1006 and "no close frame
    received or sent", never a hang."""
    async with open_pair(role) as (ours, theirs):
        theirs.transport.abort()
        with pytest.raises(trio_ws.ConnectionClosedError) as error:
            await ours.recv()
        assert str(error.value) == "no close frame received or sent"
        assert error.value.code == 1006
        assert ours.close_code == 1006
        await ours.wait_closed()


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("role", ROLES)
async def test_we_drop_tcp(role: str, how: str) -> None:
    """We close the TCP stream under an open connection (FIN, or RST with
    SO_LINGER 0): websockets sees "no close frame received or sent"."""
    accepted: list[Any] = []
    arrived = anyio.Event()

    async def their_handler(connection: ServerConnection) -> None:
        accepted.append(connection)
        arrived.set()
        await connection.wait_closed()

    def drop(stream: anyio.abc.SocketStream) -> None:
        if how == "rst":
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            if role == "our-server":
                listener = await _tcp_listener()
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                accepted_streams: list[anyio.abc.SocketStream] = []
                opened: list[WebSocketConnection] = []

                async def accept_one() -> None:
                    stream = await listener.accept()
                    accepted_streams.append(stream)
                    opened.append(await trio_ws.wrap_server_stream(tg, stream))

                async with listener:
                    tg.start_soon(accept_one)
                    async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as theirs:
                        await wait_until(lambda: bool(opened))
                        await _drop_and_check(opened[0], theirs, accepted_streams[0], drop)
            else:
                async with serve(their_handler, "127.0.0.1", 0) as their_server:
                    port = next(iter(their_server.sockets)).getsockname()[1]
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    ours = await trio_ws.wrap_client_stream(tg, stream, "127.0.0.1")
                    await arrived.wait()
                    await _drop_and_check(ours, accepted[0], stream, drop)


async def _tcp_listener() -> anyio.abc.SocketListener:
    listener: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(
        local_host="127.0.0.1", local_port=0
    )
    if isinstance(listener, anyio.streams.stapled.MultiListener):  # one per address
        (listener,) = listener.listeners
    assert isinstance(listener, anyio.abc.SocketListener)
    return listener


async def _drop_and_check(
    ours: WebSocketConnection,
    theirs: Theirs,
    stream: anyio.abc.SocketStream,
    prepare: Callable[[anyio.abc.SocketStream], None],
) -> None:
    await ours.send("before the drop")
    assert await theirs.recv() == "before the drop"
    prepare(stream)
    await stream.aclose()
    with pytest.raises(websockets.ConnectionClosedError) as their_error:
        await theirs.recv()
    assert their_error.value.rcvd is None
    assert their_error.value.sent is None
    assert "no close frame received or sent" in str(their_error.value)
    # Our side notices too, without a hang and without a close frame.
    with pytest.raises(trio_ws.ConnectionClosedError) as our_error:
        await ours.recv()
    assert our_error.value.rcvd is None
    await ours.wait_closed()


@pytest.mark.parametrize("role", ROLES)
async def test_our_keepalive_times_out_on_a_silent_peer(role: str) -> None:
    """websockets stops reading, so our pings go unanswered: we fail with
    1011 "keepalive ping timeout", and websockets reads that close frame."""
    async with open_pair(
        role,
        ours={"ping_interval": 0.1, "ping_timeout": 0.2},
        theirs={"ping_interval": None},
    ) as (ours, theirs):
        theirs.transport.pause_reading()
        with anyio.fail_after(5):
            await ours.wait_closed()
        with pytest.raises(trio_ws.ConnectionClosedError) as our_error:
            await ours.recv()
        assert str(our_error.value) == (
            "sent 1011 (internal error) keepalive ping timeout; no close frame received"
        )
        theirs.transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosedError) as their_error:
            await theirs.recv()
        assert their_error.value.rcvd is not None
        assert their_error.value.rcvd.code == 1011
        assert their_error.value.rcvd.reason == "keepalive ping timeout"


@pytest.mark.parametrize("role", ROLES)
async def test_their_keepalive_times_out_when_we_stop_reading(role: str) -> None:
    """Our reader stops at max_queue unread messages, so websockets' pings go
    unanswered and it fails with 1011; we still get every queued message, then
    its close frame."""
    async with open_pair(
        role,
        ours={"max_queue": 1, "ping_interval": None},
        theirs={"ping_interval": 0.1, "ping_timeout": 0.2},
    ) as (ours, theirs):
        await theirs.send("one")
        await theirs.send("two")
        # websockets sends its close frame, then waits for our TCP close,
        # which comes once we read again: poll for the close frame.
        await wait_until(lambda: theirs.protocol.close_sent is not None)
        assert theirs.protocol.close_sent.code == 1011
        assert ours.state is trio_ws.State.OPEN  # we have not read that far yet
        assert await ours.recv() == "one"
        assert await ours.recv() == "two"
        with pytest.raises(trio_ws.ConnectionClosedError) as error:
            await ours.recv()
        assert error.value.rcvd is not None
        assert (error.value.rcvd.code, error.value.rcvd.reason) == (
            1011,
            "keepalive ping timeout",
        )
        with anyio.fail_after(5):
            await theirs.wait_closed()


@pytest.mark.parametrize("role", ROLES)
async def test_max_size_enforced_both_ways(role: str) -> None:
    """Messages over max_size get 1009 whichever side receives them."""
    limit = 1024
    async with open_pair(role, ours={"max_size": limit}) as (ours, theirs):
        await theirs.send(b"x" * limit)
        assert await ours.recv() == b"x" * limit
        await theirs.send(b"x" * (limit + 1))
        with pytest.raises(trio_ws.ConnectionClosedError) as our_error:
            await ours.recv()
        assert our_error.value.sent is not None
        assert our_error.value.sent.code == 1009
        with pytest.raises(websockets.ConnectionClosedError) as their_error:
            await theirs.recv()
        assert their_error.value.rcvd is not None
        assert their_error.value.rcvd.code == 1009
    async with open_pair(role, theirs={"max_size": limit}) as (ours, theirs):
        await ours.send("y" * (limit + 1))
        with pytest.raises(websockets.ConnectionClosedError) as their_error:
            await theirs.recv()
        assert their_error.value.sent is not None
        assert their_error.value.sent.code == 1009
        with pytest.raises(trio_ws.ConnectionClosedError) as our_error:
            await ours.recv()
        assert our_error.value.rcvd is not None
        assert our_error.value.rcvd.code == 1009
