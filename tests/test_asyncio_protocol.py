"""On asyncio, a connection reads through its own protocol from the opening
handshake on (``trio_ws._asyncio_protocol``): clients connect into it, and
anyio's socket streams (a server's accepted ones) are adopted.

On asyncio's own event loop and on uvloop: the stream over the protocol
behaves as anyio's (chunks, EOF, errors, addresses, backpressure); what
anyio had already read goes first; once the connection attaches, reading
pauses while ``recv()``'s queue is full and resumes once it drains, and
everything sent arrives, in order, through the closing handshake."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import struct
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSStream

import trio_ws
from tests.interop.peers import wait_until
from tests.io_helpers import serving
from trio_ws import ConnectionClosedOK, WebSocketConnection
from trio_ws._asyncio_protocol import PENDING_LIMIT, ProtocolStream, adopt
from trio_ws._streams import peer_addresses
from trio_ws._waits import wait_functions

TIMEOUT = 10

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize(
        "anyio_backend",
        [
            pytest.param(("asyncio", {"debug": True}), id="asyncio"),
            pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        ],
    ),
]


class Recorder:
    """Stands in for the connection: records what the protocol hands it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = False
        self.lost: list[Exception | None] = []
        self.changed = anyio.Event()
        self.write_limit: int | None = 0  # direct writes into an empty buffer only
        self.resumed = 0

    def _writing_resumed(self) -> None:
        self.resumed += 1

    def _data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.changed.set()

    def _transport_eof(self) -> None:
        self.eof = True
        self.changed.set()

    def _transport_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.changed.set()

    async def wait_for(self, size: int) -> None:
        while sum(map(len, self.chunks)) < size:
            self.changed = anyio.Event()
            await self.changed.wait()


async def tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with multi:
        [listener] = multi.listeners
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()  # type: ignore[attr-defined]
    return client, server


def adopted(stream: anyio.abc.SocketStream) -> ProtocolStream:
    result = adopt(stream, wait_functions())
    assert result is not None
    return result


async def test_what_anyio_already_read_is_handed_over_first() -> None:
    client, server = await tcp_pair()
    async with client, server:
        transport: Any = server._transport  # type: ignore[attr-defined]
        queue = server._protocol.read_queue  # type: ignore[attr-defined]
        # Let anyio's protocol read two chunks, as it may during a receive().
        transport.resume_reading()
        with anyio.fail_after(TIMEOUT):
            await client.send(b"first")
            await wait_until(lambda: len(queue) == 1)
            await client.send(b"second")
            await wait_until(lambda: len(queue) == 2)
        transport.pause_reading()
        stream = adopted(server)
        assert transport.get_protocol() is stream.protocol
        assert not queue
        with anyio.fail_after(TIMEOUT):
            assert await stream.receive() == b"first"
        # Once a connection attaches, it gets what is left, then the rest.
        recorder = Recorder()
        stream.protocol.attach(recorder)
        assert recorder.chunks == [b"second"]
        with pytest.raises(anyio.BusyResourceError):
            await stream.receive()
        with anyio.fail_after(TIMEOUT):
            await client.send(b"third")
            await recorder.wait_for(len(b"secondthird"))
            assert b"".join(recorder.chunks) == b"secondthird"
            await client.send_eof()
            while not recorder.eof:
                await recorder.changed.wait()
                recorder.changed = anyio.Event()


async def test_a_stream_at_eof_is_left_to_anyio() -> None:
    client, server = await tcp_pair()
    async with client, server:
        await client.send(b"last words")
        await client.send_eof()
        with anyio.fail_after(TIMEOUT):
            assert await server.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
        assert adopt(server, wait_functions()) is None
        # Nor a stream that is not anyio's socket stream.
        send, receive = anyio.create_memory_object_stream[bytes]()
        async with send, receive:
            stapled = anyio.streams.stapled.StapledObjectStream(send, receive)
            assert adopt(stapled, wait_functions()) is None  # type: ignore[arg-type]


async def test_the_stream_reads_as_anyio_s_does() -> None:
    client, anyio_server = await tcp_pair()
    server = adopted(anyio_server)
    async with client, server:
        with anyio.fail_after(TIMEOUT):
            await client.send(b"0123456789")
            await wait_until(lambda: bool(server.protocol._pending))
            # A chunk larger than asked for is split, the rest kept in order.
            assert await server.receive(4) == b"0123"
            assert await server.receive() == b"456789"
            with pytest.raises(ValueError, match="positive"):
                await server.receive(0)
            await client.send(b"tail")
            await client.send_eof()
            assert await server.receive() == b"tail"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
            # Half-closed: we can still answer.
            await server.send(b"answer")
            assert await client.receive() == b"answer"
        await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await server.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await server.send(b"x")


async def test_a_reset_connection_breaks_the_stream() -> None:
    client, anyio_server = await tcp_pair()
    server = adopted(anyio_server)
    async with server:
        raw: Any = client.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()  # RST
        with anyio.fail_after(TIMEOUT):
            with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                await server.receive()
            await wait_until(lambda: server.protocol._lost)
            with pytest.raises(anyio.BrokenResourceError):
                await server.send(b"x" * (1 << 20))


async def test_reading_pauses_while_too_much_waits_unread() -> None:
    client, anyio_server = await tcp_pair()
    server = adopted(anyio_server)
    async with client, server:
        payload = os.urandom(4 * PENDING_LIMIT)
        transport: Any = server._transport
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(client.send, payload)
                await wait_until(lambda: not transport.is_reading())
                pending = server.protocol._pending_size
                assert PENDING_LIMIT <= pending < len(payload)
                received = bytearray()
                while len(received) < len(payload):
                    received.extend(await server.receive())
                    if server.protocol._pending_size < PENDING_LIMIT // 2:
                        assert transport.is_reading()
        assert received == payload


async def test_socket_attributes_come_from_the_transport() -> None:
    client, anyio_server = await tcp_pair()
    expected = {
        attribute: anyio_server.extra(attribute)
        for attribute in (
            anyio.abc.SocketAttribute.family,
            anyio.abc.SocketAttribute.local_address,
            anyio.abc.SocketAttribute.local_port,
            anyio.abc.SocketAttribute.remote_address,
            anyio.abc.SocketAttribute.remote_port,
        )
    }
    addresses = peer_addresses(anyio_server)
    server = adopted(anyio_server)
    async with client, server:
        for attribute, value in expected.items():
            assert server.extra(attribute) == value
        remote, local, raw = server.peer_addresses()
        assert (remote, local) == addresses[:2]
        assert addresses[2] is not None
        assert raw.fileno() == addresses[2].fileno()
        assert peer_addresses(server) == (remote, local, raw)
        assert server.extra(anyio.abc.SocketAttribute.remote_address) == client.extra(
            anyio.abc.SocketAttribute.local_address
        )
        raw = server.extra(anyio.abc.SocketAttribute.raw_socket)
        assert raw.fileno() == server._transport.get_extra_info("socket").fileno()


async def test_servers_and_clients_use_the_protocol_from_the_start() -> None:
    seen: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        seen.append(ws)
        await ws.send(await ws.recv())

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            for host in ("127.0.0.1", "localhost"):  # an address, then a name
                url = f"ws://{host}:{server.port}/"
                async with trio_ws.open_websocket_url(url) as ws:
                    await ws.send("ping")
                    assert await ws.recv() == "ping"
                    assert isinstance(ws._stream, ProtocolStream)
                    assert ws._protocol is ws._stream.protocol
                    assert ws.remote_address == ("127.0.0.1", server.port)
                assert isinstance(seen[-1]._stream, ProtocolStream)
                assert seen[-1].remote_address == ws.local_address


async def test_tls_runs_over_the_protocol_on_both_sides(ca: trustme.CA) -> None:
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    seen: list[WebSocketConnection] = []
    payload = os.urandom(300_000)  # several TLS records, more than one read

    async def handler(ws: WebSocketConnection) -> None:
        seen.append(ws)
        await ws.send(await ws.recv())

    with anyio.fail_after(TIMEOUT):
        async with serving(handler, ssl=server_ssl) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, ssl=client_ssl) as ws:
                await ws.send(payload)
                assert await ws.recv() == payload
                for connection in (ws, seen[0]):
                    tls: Any = connection._stream
                    assert isinstance(tls, TLSStream)
                    assert isinstance(tls.transport_stream, ProtocolStream)
                    assert connection._protocol is None  # TLS reads the stream
                assert seen[0].remote_address == ws.local_address


async def test_send_waits_for_the_transport_to_drain_and_fails_once_lost() -> None:
    client, server = await tcp_pair()
    async with client, server:
        recorder = Recorder()
        stream = adopted(server)
        protocol = stream.protocol
        protocol.attach(recorder)
        payload = os.urandom(8 << 20)  # more than the socket buffers hold
        received = bytearray()

        async def read_all() -> None:
            while len(received) < 2 * len(payload):
                received.extend(await client.receive())

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_all)
                await protocol.send(payload)
                # When send() returns, the transport passed it all on.
                assert protocol.transport.get_write_buffer_size() == 0
                # The stream's send() too.
                await stream.send(payload)
                assert protocol.transport.get_write_buffer_size() == 0
        assert received == payload * 2
        # Nothing goes into the buffer behind a paused transport.
        assert protocol.try_write(b"x" * (8 << 20)) == 8 << 20
        assert protocol.transport.get_write_buffer_size() > 0
        assert protocol.try_write(b"y") == 0
        protocol.transport.abort()
        with anyio.fail_after(TIMEOUT):
            while not recorder.lost:
                await recorder.changed.wait()
                recorder.changed = anyio.Event()
            with pytest.raises(anyio.BrokenResourceError):
                await protocol.send(b"z")
        assert protocol.try_write(b"z") == 0


async def test_direct_writes_fill_the_buffer_up_to_the_receivers_write_limit() -> None:
    client, server = await tcp_pair()
    async with client, server:
        recorder = Recorder()
        recorder.write_limit = 1 << 20
        protocol = adopted(server).protocol
        protocol.attach(recorder)
        chunk = b"x" * (16 << 20)  # more than the socket buffers hold
        assert protocol.try_write(chunk) == len(chunk)
        buffered = protocol.buffered()
        assert buffered == protocol.transport.get_write_buffer_size() > 1 << 20
        assert protocol.try_write(b"y") == 0  # over the limit: no room
        recorder.write_limit = None  # no limit: always room
        assert protocol.try_write(b"y") == 1
        assert protocol.buffered() == buffered + 1
        with anyio.fail_after(TIMEOUT):
            received = 0
            while received < len(chunk) + 1:
                received += len(await client.receive())
            # The buffer drained: the connection hears of it.
            while protocol.buffered():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert recorder.resumed == 1
        assert protocol.buffered() == 0


@pytest.mark.parametrize(
    ("size", "count", "options", "paused_with"),
    [
        # Paused with max_queue messages; one read may hold a few more.
        pytest.param(100, 200, {"max_queue": 4}, range(4, 200), id="max_queue"),
        # The event loop's reads can deliver many large messages in one go:
        # paused once 1 MiB waits, whatever max_queue says; one read may
        # complete one more.
        pytest.param(300_000, 20, {"max_size": None}, range(4, 6), id="mebibyte"),
    ],
)
async def test_reading_pauses_while_the_queue_is_full(
    size: int, count: int, options: dict[str, Any], paused_with: range
) -> None:
    messages = [random.Random(number).randbytes(size) for number in range(count)]
    connections: list[WebSocketConnection] = []
    release = anyio.Event()
    received: list[Any] = []

    async def handler(ws: WebSocketConnection) -> None:
        connections.append(ws)
        await release.wait()
        for _ in range(count):
            received.append(await ws.recv())
        await ws.send("done")

    async def produce() -> None:
        for message in messages:
            await ws.send(message)

    with anyio.fail_after(TIMEOUT):
        async with serving(handler, compression=None, **options) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with (
                trio_ws.open_websocket_url(url, compression=None) as ws,
                anyio.create_task_group() as task_group,
            ):
                task_group.start_soon(produce)
                await wait_until(lambda: bool(connections))
                [connection] = connections
                protocol = connection._protocol
                assert protocol is not None
                await wait_until(lambda: not protocol.transport.is_reading())
                queued = connection._messages
                assert queued is not None
                assert len(queued) in paused_with
                release.set()
                assert await ws.recv() == "done"
                assert received == messages
                assert protocol.transport.is_reading()


async def test_a_large_message_sent_just_before_closing_arrives_whole() -> None:
    payload = os.urandom(6 << 20)
    got: list[Any] = []

    async def handler(ws: WebSocketConnection) -> None:
        # Written straight to the transport, most of it left in its buffer;
        # the close frame must wait behind it, and closing must not drop it.
        await ws.send(payload)
        await ws.aclose()

    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, max_size=None) as ws:
                await anyio.sleep(0.05)  # let the server's buffer fill up
                got.append(await ws.recv())
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
    assert got == [payload]


async def test_the_uvloop_cases_run_on_uvloop(anyio_backend: tuple[str, Any]) -> None:
    module = type(asyncio.get_running_loop()).__module__
    assert module.startswith("uvloop") is bool(anyio_backend[1].get("use_uvloop"))
