"""In-memory transports and connection pairs for the I/O-layer tests.

- :func:`memory_stream_pair` joins two anyio byte streams through in-memory
  pipes, on any backend: EOF with ``send_eof()``/``aclose()``, a broken pipe
  when the peer is gone, a reset with :meth:`MemoryByteStream.abort`, and an
  optional bound (in bytes) on what a direction holds unread, so that a peer
  that does not read pushes back on the writer as TCP would.
- :class:`ControlledStream` wraps a stream and lets a test record, pause,
  delay or drop what goes through it (websockets' ``tests/trio/connection.py``
  has the same idea).
- :func:`open_connection_pair` runs the opening handshake of a client and a
  server connection over such a pair; :func:`open_raw_pair` puts a
  :class:`RawPeer`, spoken frame by frame with no tasks, on the far end.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

import trio_ws
from trio_ws.client import wrap_client_stream
from trio_ws.connection import WebSocketConnection
from trio_ws.protocol.frames import Frame, Opcode, apply_mask, parse_header
from trio_ws.protocol.handshake import ClientHandshake, ServerHandshake
from trio_ws.server import WebSocketServer, wrap_server_stream

__all__ = [
    "ConnectionPair",
    "ControlledStream",
    "FrameParser",
    "MemoryByteStream",
    "RawPair",
    "RawPeer",
    "data_frames",
    "memory_stream_pair",
    "open_connection_pair",
    "open_raw_pair",
    "parse_frames",
]


# -- an in-memory byte stream --------------------------------------------------


class _Pipe:
    """One direction of a :func:`memory_stream_pair`."""

    def __init__(self, capacity: int | None) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.eof = False  # the writing end sent EOF or closed
        self.reset = False  # the writing end aborted: the reader sees a reset
        self.reader_gone = False  # the reading end closed: writes fail
        self._changed = anyio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self) -> None:
        await self._changed.wait()


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of a :func:`memory_stream_pair`."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint_if_cancelled()
        pipe = self._in
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if pipe.reset:
                raise anyio.BrokenResourceError from ConnectionResetError(
                    "connection reset by peer"
                )
            if pipe.buffer:
                data = bytes(pipe.buffer[:max_bytes])
                del pipe.buffer[:max_bytes]
                pipe.notify()
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return data
            if pipe.eof:
                raise anyio.EndOfStream
            await pipe.wait()

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        pipe = self._out
        view = memoryview(item).cast("B")
        blocked = False
        while True:
            if self._closed or pipe.eof:
                raise anyio.ClosedResourceError
            if pipe.reader_gone:
                raise anyio.BrokenResourceError from BrokenPipeError("broken pipe")
            if not view:
                break
            room = len(view) if pipe.capacity is None else pipe.capacity - len(pipe.buffer)
            if room > 0:
                # Like a socket: what fits is written even if we wait for the rest.
                pipe.buffer += view[:room]
                view = view[room:]
                pipe.notify()
                continue
            blocked = True
            await pipe.wait()
        if not blocked:
            await anyio.lowlevel.cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._out.eof = True
        self._out.notify()

    async def aclose(self) -> None:
        # Close first, then checkpoint: aclose() must close even when cancelled.
        if not self._closed:
            self._closed = True
            self._out.eof = True
            self._in.reader_gone = True
            self._in.notify()
            self._out.notify()
        await anyio.lowlevel.checkpoint()

    def abort(self) -> None:
        """Drop the connection like a TCP reset: the peer's next read fails."""
        self._closed = True
        self._out.reset = True
        self._out.buffer.clear()
        self._in.reader_gone = True
        self._in.notify()
        self._out.notify()

    @property
    def unread(self) -> int:
        """Bytes written by the peer that this end has not read yet."""
        return len(self._in.buffer)


def memory_stream_pair(
    capacity: int | None = None,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Return two connected in-memory byte streams.

    ``capacity`` bounds the bytes each direction holds unread; a writer waits
    for the reader beyond it. None means unbounded.
    """
    a_to_b, b_to_a = _Pipe(capacity), _Pipe(capacity)
    return MemoryByteStream(b_to_a, a_to_b), MemoryByteStream(a_to_b, b_to_a)


# -- fault injection -------------------------------------------------------------


class ControlledStream(anyio.abc.ByteStream):
    """Wrap a byte stream; the test decides what gets through, and when.

    ``writes`` records the data of every ``send()`` call, in order.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.writes: list[bytes] = []
        #: Seconds each write waits before going out (virtual time on trio).
        self.write_delay = 0.0
        #: Writes are recorded, then discarded: the peer never sees them.
        self.drop_writes = False
        #: aclose() does not close the inner stream: the peer never sees EOF.
        self.drop_eof = False
        self.closed = False
        self._write_gate: anyio.Event | None = None
        self._read_gate: anyio.Event | None = None

    def pause_writes(self) -> None:
        """Hold every write (after recording it) until :meth:`resume_writes`."""
        if self._write_gate is None:
            self._write_gate = anyio.Event()

    def resume_writes(self) -> None:
        if self._write_gate is not None:
            self._write_gate.set()
            self._write_gate = None

    def pause_reads(self) -> None:
        """Hold every read until :meth:`resume_reads`: the owner stops listening.

        A read already waiting gets its data but returns it only on resume.
        """
        if self._read_gate is None:
            self._read_gate = anyio.Event()

    def resume_reads(self) -> None:
        if self._read_gate is not None:
            self._read_gate.set()
            self._read_gate = None

    def heal(self) -> None:
        """Undo every fault, so the connection can close normally."""
        self.resume_reads()
        self.resume_writes()
        self.write_delay = 0.0
        self.drop_writes = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await self._wait_for_reads()
        try:
            data = await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            await self._wait_for_reads()
            raise
        # Paused while a read was already waiting: hold what it got.
        await self._wait_for_reads()
        return data

    async def _wait_for_reads(self) -> None:
        while self._read_gate is not None:
            await self._read_gate.wait()

    async def send(self, item: bytes) -> None:
        self.writes.append(bytes(item))
        while self._write_gate is not None:
            await self._write_gate.wait()
        if self.write_delay:
            await anyio.sleep(self.write_delay)
        if self.drop_writes:
            await anyio.lowlevel.checkpoint()
            return
        await self.stream.send(item)

    async def send_eof(self) -> None:
        if self.drop_eof:
            await anyio.lowlevel.checkpoint()
            return
        await self.stream.send_eof()

    async def aclose(self) -> None:
        self.closed = True
        if self.drop_eof:
            await anyio.lowlevel.checkpoint()
            return
        await self.stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return self.stream.extra_attributes

    def written_frames(self) -> list[Frame]:
        """Parse everything written so far (after the handshake) into frames."""
        data = b"".join(self.writes)
        head_end = data.find(b"\r\n\r\n")
        if data.startswith((b"GET ", b"HTTP/")) and head_end >= 0:
            data = data[head_end + 4 :]
        return parse_frames(data)


# -- frames ----------------------------------------------------------------------


class FrameParser:
    """Cut a byte stream into frames, unmasking them; no validation."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            header = parse_header(self._buffer)
            if header is None:
                break
            first, length, mask, header_length = header
            if len(self._buffer) < header_length + length:
                break
            payload = bytes(self._buffer[header_length : header_length + length])
            del self._buffer[: header_length + length]
            if mask is not None:
                payload = apply_mask(payload, mask)
            frames.append(
                Frame(
                    Opcode(first & 0x0F),
                    payload,
                    fin=bool(first & 0x80),
                    rsv1=bool(first & 0x40),
                    rsv2=bool(first & 0x20),
                    rsv3=bool(first & 0x10),
                )
            )
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


def parse_frames(data: bytes) -> list[Frame]:
    """Parse ``data``, which must hold whole frames only."""
    parser = FrameParser()
    frames = parser.feed(data)
    assert parser.pending == 0, "data ends inside a frame"
    return frames


def data_frames(frames: list[Frame]) -> list[Frame]:
    """Keep the data frames (text, binary, continuation) of ``frames``."""
    return [f for f in frames if f.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)]


class RawPeer:
    """The far end of a connection, driven by hand one frame at a time."""

    def __init__(self, stream: ControlledStream, *, is_client: bool, trailing: bytes) -> None:
        self.stream = stream
        self.is_client = is_client
        self._parser = FrameParser()
        self._frames: list[Frame] = self._parser.feed(trailing)
        self.eof = False

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send_frame(self, frame: Frame) -> None:
        """Send ``frame``, masked if we play the client."""
        await self.stream.send(self.serialize(frame))

    def serialize(self, frame: Frame) -> bytes:
        return frame.serialize(mask_key=os.urandom(4) if self.is_client else None)

    async def receive_frame(self) -> Frame | None:
        """Return the next frame from the connection, or None at EOF."""
        while not self._frames:
            if self.eof:
                return None
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.eof = True
                assert self._parser.pending == 0, "EOF inside a frame"
                continue
            self._frames += self._parser.feed(data)
        return self._frames.pop(0)

    async def receive_until_eof(self) -> list[Frame]:
        """Return every frame until the connection closes the stream."""
        frames = []
        while (frame := await self.receive_frame()) is not None:
            frames.append(frame)
        return frames


# -- connection pairs ------------------------------------------------------------


@dataclass
class ConnectionPair:
    client: WebSocketConnection
    server: WebSocketConnection
    #: What the client reads from and writes to.
    client_stream: ControlledStream
    #: What the server reads from and writes to.
    server_stream: ControlledStream


@asynccontextmanager
async def open_connection_pair(
    *,
    capacity: int | None = None,
    resource: str = "/",
    client_options: Mapping[str, Any] | None = None,
    server_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[ConnectionPair]:
    """Open a client and a server connection joined in memory.

    Their tasks run in a task group of this block; leaving it undoes every
    fault injected in the streams and closes both connections. An exception
    from the block propagates as it is, not inside an ExceptionGroup.
    """
    client_raw, server_raw = memory_stream_pair(capacity)
    client_stream, server_stream = ControlledStream(client_raw), ControlledStream(server_raw)
    task_group = anyio.create_task_group()
    await task_group.__aenter__()
    connections: list[WebSocketConnection] = []
    try:
        servers: list[WebSocketConnection] = []

        async def accept() -> None:
            servers.append(
                await wrap_server_stream(task_group, server_stream, **(server_options or {}))
            )

        async with anyio.create_task_group() as handshake:
            handshake.start_soon(accept)
            client = await wrap_client_stream(
                task_group, client_stream, "localhost", resource, **(client_options or {})
            )
            connections.append(client)
        connections.append(servers[0])
        yield ConnectionPair(client, servers[0], client_stream, server_stream)
    finally:
        with anyio.CancelScope(shield=True):
            client_stream.heal()
            server_stream.heal()
            for connection in connections:
                await connection.aclose()
            await client_stream.aclose()
            await server_stream.aclose()
        await task_group.__aexit__(None, None, None)


@dataclass
class RawPair:
    #: The connection under test.
    ws: WebSocketConnection
    #: Its peer, spoken frame by frame.
    peer: RawPeer
    #: What ``ws`` reads from and writes to.
    stream: ControlledStream


async def raw_server_handshake(stream: ControlledStream, first_data: bytes = b"") -> RawPeer:
    """Accept a client's upgrade request without compression; ``first_data``
    (say, serialized frames) goes out in the same write as the 101."""
    handshake = ServerHandshake()
    while handshake.request is None and handshake.error is None:
        handshake.receive_data(await stream.receive())
    assert handshake.error is None, handshake.error
    handshake.send_response(handshake.accept(compression=None))
    await stream.send(handshake.data_to_send() + first_data)
    return RawPeer(stream, is_client=False, trailing=handshake.trailing_data)


async def raw_client_handshake(stream: ControlledStream, first_data: bytes = b"") -> RawPeer:
    """Open as a client without compression; ``first_data`` (serialized,
    masked frames) is pipelined after the request in the same write."""
    handshake = ClientHandshake("localhost", "/", compression=None)
    await stream.send(handshake.data_to_send() + first_data)
    while not handshake.complete:
        try:
            handshake.receive_data(await stream.receive())
        except anyio.EndOfStream:
            handshake.receive_eof()
    assert handshake.accepted, handshake.error
    return RawPeer(stream, is_client=True, trailing=handshake.trailing_data)


@asynccontextmanager
async def open_raw_pair(
    side: str,
    *,
    capacity: int | None = None,
    first_data: bytes = b"",
    **options: Any,
) -> AsyncIterator[RawPair]:
    """Open a connection playing ``side`` ("client" or "server") against a
    :class:`RawPeer`. ``options`` go to the connection.

    Leaving the block closes the raw peer's stream first (the connection sees
    EOF), then the connection.
    """
    near_raw, far_raw = memory_stream_pair(capacity)
    near, far = ControlledStream(near_raw), ControlledStream(far_raw)
    task_group = anyio.create_task_group()
    await task_group.__aenter__()
    connections: list[WebSocketConnection] = []
    try:
        peers: list[RawPeer] = []

        async def run_peer() -> None:
            if side == "client":
                peers.append(await raw_server_handshake(far, first_data))
            else:
                peers.append(await raw_client_handshake(far, first_data))

        async with anyio.create_task_group() as handshake:
            handshake.start_soon(run_peer)
            if side == "client":
                ws = await wrap_client_stream(task_group, near, "localhost", "/", **options)
            else:
                ws = await wrap_server_stream(task_group, near, **options)
            connections.append(ws)
        yield RawPair(ws, peers[0], near)
    finally:
        with anyio.CancelScope(shield=True):
            near.heal()
            far.heal()
            await far.aclose()
            for connection in connections:
                await connection.aclose()
            await near.aclose()
        await task_group.__aexit__(None, None, None)


class SteppingClock:
    """A clock for the connection's turns that moves ``step`` per reading,
    so that how often its calls yield does not depend on the machine."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def echo(ws: WebSocketConnection) -> None:
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def serving(
    handler: Callable[[WebSocketConnection], Awaitable[None]] = echo,
    host: str | None = "127.0.0.1",
    **options: Any,
) -> AsyncIterator[WebSocketServer]:
    """Run ``serve_websocket`` on port 0 for the duration of the block."""
    async with anyio.create_task_group() as task_group:
        serve = functools.partial(trio_ws.serve_websocket, handler, host, 0, **options)
        server: WebSocketServer = await task_group.start(serve)
        try:
            yield server
        finally:
            task_group.cancel_scope.cancel()
