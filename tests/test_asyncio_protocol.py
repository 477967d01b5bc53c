"""On asyncio, a connection reads through its own protocol, put under anyio's
socket stream once the handshake is over (``trio_ws._asyncio_protocol``).

On asyncio's own event loop and on uvloop: what anyio had already read goes
first, reading pauses while ``recv()``'s queue is full and resumes once it
drains, and everything sent arrives, in order, through the closing
handshake."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
import anyio.abc
import pytest

import trio_ws
from tests.interop.peers import wait_until
from tests.io_helpers import serving
from trio_ws import ConnectionClosedOK, WebSocketConnection
from trio_ws._asyncio_protocol import take_over
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
        recorder = Recorder()
        protocol = take_over(server, recorder, wait_functions())
        assert protocol is not None
        assert transport.get_protocol() is protocol
        assert recorder.chunks == [b"first", b"second"]
        assert not queue
        # Reading goes on through ours.
        with anyio.fail_after(TIMEOUT):
            await client.send(b"third")
            await recorder.wait_for(len(b"firstsecondthird"))
            assert b"".join(recorder.chunks) == b"firstsecondthird"
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
        assert take_over(server, Recorder(), wait_functions()) is None
        # Nor a stream that is not anyio's socket stream.
        send, receive = anyio.create_memory_object_stream[bytes]()
        async with send, receive:
            stapled = anyio.streams.stapled.StapledObjectStream(send, receive)
            assert take_over(stapled, Recorder(), wait_functions()) is None  # type: ignore[arg-type]


async def test_send_waits_for_the_transport_to_drain_and_fails_once_lost() -> None:
    client, server = await tcp_pair()
    async with client, server:
        recorder = Recorder()
        protocol = take_over(server, recorder, wait_functions())
        assert protocol is not None
        payload = os.urandom(8 << 20)  # more than the socket buffers hold
        received = bytearray()

        async def read_all() -> None:
            while len(received) < len(payload):
                received.extend(await client.receive())

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_all)
                await protocol.send(payload)
                # When send() returns, the transport passed it all on.
                assert protocol.transport.get_write_buffer_size() == 0
        assert received == payload
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


async def test_reading_pauses_while_the_queue_is_full() -> None:
    count, max_queue = 200, 4
    messages = [os.urandom(100) for _ in range(count)]
    connections: list[WebSocketConnection] = []
    release = anyio.Event()
    received: list[Any] = []

    async def handler(ws: WebSocketConnection) -> None:
        connections.append(ws)
        await release.wait()
        for _ in range(count):
            received.append(await ws.recv())
        await ws.send("done")

    with anyio.fail_after(TIMEOUT):
        async with serving(handler, max_queue=max_queue) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url) as ws:
                for message in messages:
                    await ws.send(message)
                [connection] = connections
                protocol = connection._protocol
                assert protocol is not None
                await wait_until(lambda: not protocol.transport.is_reading())
                # Paused with the queue full; one read may hold a few more.
                queued = connection._messages
                assert queued is not None
                assert max_queue <= len(queued) < count
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
