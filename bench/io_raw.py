"""The limit: the same workloads over plain TCP, with no WebSocket at all.

A message is a 4-byte big-endian length and the payload (a WebSocket frame
header is 2-14 bytes). A connection opens with one message carrying the
path (``/echo`` or ``/sink?...``), which the server answers with ``OK``:
the raw equivalent of the opening handshake. Closing is an EOF each way,
one round trip like a closing handshake. The server echoes every message,
or counts and checks them exactly like the WebSocket sinks.

On trio, the server and client use ``trio.SocketStream`` (what anyio's trio
backend wraps too); on asyncio (uvloop), a ``Protocol``, the fastest asyncio
API, with the same ``send``/``recv`` coroutines as the libraries' clients.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from io_common import Payload, Sink, Stats, is_sink
from io_drivers import Connect, Control, Endpoint, Ready, run

if TYPE_CHECKING:
    import asyncio

HEADER = struct.Struct(">I")
RECEIVE_SIZE = 65536
#: Above this, the header and the payload are written separately rather
#: than copied into one buffer.
COPY_LIMIT = 16384


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class FrameBuffer:
    """Turns received chunks into whole messages, copying each payload once.

    A message that arrived whole within one chunk is sliced out of it; a
    longer one is gathered as views of the chunks and joined once complete
    (growing one buffer instead made the kernel map and zero fresh pages
    for every 1 MiB message, a 5x slowdown on the dev VM).
    """

    def __init__(self) -> None:
        self.head = b""  # an incomplete length prefix
        self.parts: list[memoryview] = []  # the payload so far of a long message
        self.missing = -1  # payload bytes still due; -1 while reading a prefix

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self.head:
            data = self.head + data
            self.head = b""
        pos, end = 0, len(data)
        if self.missing >= 0:  # inside a long message
            take = min(self.missing, end)
            self.parts.append(memoryview(data)[:take])
            self.missing -= take
            pos = take
            if self.missing:
                return out
            out.append(b"".join(self.parts))
            self.parts = []
            self.missing = -1
        unpack_from = HEADER.unpack_from
        while pos < end:
            if end - pos < 4:
                self.head = data[pos:]
                break
            (length,) = unpack_from(data, pos)
            pos += 4
            stop = pos + length
            if stop <= end:
                out.append(data[pos:stop])
                pos = stop
            else:
                self.parts = [memoryview(data)[pos:]]
                self.missing = stop - end
                break
        return out


def _check_bytes(message: Payload) -> bytes:
    if isinstance(message, str):
        raise TypeError("raw TCP carries bytes only")
    return message


class _Conversation:
    """The server's side of one raw connection, shared by both loops:
    returns what to write back for each chunk received."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.frames = FrameBuffer()
        self.path: str | None = None
        self.sink: Sink | None = None

    def receive(self, data: bytes) -> bytes:
        messages = self.frames.feed(data)
        out = b""
        if self.path is None:
            if not messages:
                return b""
            self.path = messages.pop(0).decode()
            self.sink = Sink(self.path) if is_sink(self.path) else None
            self.stats.opened()
            out = frame(b"OK")
        if not messages:
            return out
        sink = self.sink
        if sink is None:
            pack = HEADER.pack
            return b"".join([out, *(part for m in messages for part in (pack(len(m)), m))])
        for message in messages:
            ack = sink.feed(message)
            if ack is not None:
                out += frame(ack.encode())
        return out

    def lost(self) -> None:
        if self.path is not None:
            self.stats.closed()


# -- trio ------------------------------------------------------------------------------


async def serve_raw_trio(stats: Stats, ready: Ready) -> None:
    import trio

    async def handler(stream: trio.SocketStream) -> None:
        conversation = _Conversation(stats)
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                out = conversation.receive(data)
                if out:
                    await stream.send_all(out)
        except trio.BrokenResourceError:
            pass
        finally:
            conversation.lost()
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    ready(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


@asynccontextmanager
async def connectors_raw_trio() -> AsyncIterator[Connect]:
    import trio

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        assert parts.hostname is not None
        assert parts.port is not None
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        try:
            frames = FrameBuffer()
            pending: deque[bytes] = deque()
            send_all, receive_some = stream.send_all, stream.receive_some

            async def send(message: Payload) -> None:
                data = _check_bytes(message)
                if len(data) > COPY_LIMIT:
                    await send_all(HEADER.pack(len(data)))
                    await send_all(data)
                else:
                    await send_all(HEADER.pack(len(data)) + data)

            async def recv() -> bytes:
                while not pending:
                    data = await receive_some(RECEIVE_SIZE)
                    if not data:
                        raise EOFError("raw server closed the connection")
                    pending.extend(frames.feed(data))
                return pending.popleft()

            await send(path.encode())
            if await recv() != b"OK":
                raise ConnectionError("raw server refused the connection")
            yield Endpoint(send, recv)
            await stream.send_eof()
            while await stream.receive_some(RECEIVE_SIZE):
                pass
        finally:
            await stream.aclose()

    yield connect


# -- asyncio (uvloop) --------------------------------------------------------------------


def _asyncio_server_protocol(stats: Stats) -> type[asyncio.Protocol]:
    import asyncio

    class RawServer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # uvloop's transports do not derive from asyncio.Transport.
            self.transport = cast("asyncio.Transport", transport)
            self.conversation = _Conversation(stats)

        def data_received(self, data: bytes) -> None:
            out = self.conversation.receive(data)
            if out:
                self.transport.write(out)

        def eof_received(self) -> bool:
            return False  # close

        def connection_lost(self, exc: Exception | None) -> None:
            self.conversation.lost()

    return RawServer


async def serve_raw_asyncio(stats: Stats, ready: Ready) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    server = await loop.create_server(_asyncio_server_protocol(stats), "127.0.0.1", 0)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


def _asyncio_client_protocol() -> type[Any]:
    import asyncio

    class RawClient(asyncio.Protocol):
        def __init__(self) -> None:
            self.loop = asyncio.get_running_loop()
            self.frames = FrameBuffer()
            self.pending: deque[bytes] = deque()
            self.waiter: asyncio.Future[None] | None = None
            self.writable: asyncio.Future[None] | None = None
            self.eof = False
            self.lost = self.loop.create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast("asyncio.Transport", transport)

        def data_received(self, data: bytes) -> None:
            messages = self.frames.feed(data)
            if messages:
                self.pending.extend(messages)
                self._wake()

        def eof_received(self) -> bool:
            self.eof = True
            self._wake()
            return False

        def connection_lost(self, exc: Exception | None) -> None:
            self.eof = True
            self._wake()
            if self.writable is not None and not self.writable.done():
                self.writable.set_result(None)
            if not self.lost.done():
                self.lost.set_result(None)

        def _wake(self) -> None:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def pause_writing(self) -> None:
            self.writable = self.loop.create_future()

        def resume_writing(self) -> None:
            if self.writable is not None and not self.writable.done():
                self.writable.set_result(None)
            self.writable = None

        async def send(self, message: Payload) -> None:
            data = _check_bytes(message)
            if len(data) > COPY_LIMIT:
                self.transport.writelines((HEADER.pack(len(data)), data))
            else:
                self.transport.write(HEADER.pack(len(data)) + data)
            if self.writable is not None:
                await self.writable

        async def recv(self) -> bytes:
            pending = self.pending
            while not pending:
                if self.eof:
                    raise EOFError("raw server closed the connection")
                self.waiter = self.loop.create_future()
                await self.waiter
            return pending.popleft()

    return RawClient


@asynccontextmanager
async def connectors_raw_asyncio() -> AsyncIterator[Connect]:
    import asyncio

    loop = asyncio.get_running_loop()
    client_class = _asyncio_client_protocol()

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        assert parts.hostname is not None
        assert parts.port is not None
        transport, protocol = await loop.create_connection(client_class, parts.hostname, parts.port)
        try:
            await protocol.send(path.encode())
            if await protocol.recv() != b"OK":
                raise ConnectionError("raw server refused the connection")
            yield Endpoint(protocol.send, protocol.recv)
            transport.write_eof()
            await protocol.lost
        finally:
            transport.close()

    yield connect


# -- registry ---------------------------------------------------------------------------


async def serve(key: str, stats: Stats, ready: Ready) -> None:
    if key == "raw-trio":
        await serve_raw_trio(stats, ready)
    else:
        await serve_raw_asyncio(stats, ready)


async def run_client(key: str, cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    factory = connectors_raw_trio if key == "raw-trio" else connectors_raw_asyncio
    return await run(factory, cmd, control)
