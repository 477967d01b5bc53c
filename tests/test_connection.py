"""The connection layer: WebSocketConnection's tasks, queues, timers and errors.

Most tests run on both backends over the in-memory streams of
``tests/io_helpers.py``; a few use real loopback sockets, where TCP matters,
and the trio-only ones use trio's virtual clock (``autojump_clock``) so that
keepalive and close timeouts take no real time.
"""

from __future__ import annotations

import array
import functools
import logging
import random
import socket
import ssl
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trio
import trio.testing
import trustme

from tests.io_helpers import (
    ConnectionPair,
    ControlledStream,
    MemoryByteStream,
    RawPeer,
    data_frames,
    memory_stream_pair,
    open_connection_pair,
    open_raw_pair,
    parse_frames,
    raw_client_handshake,
    raw_server_handshake,
)
from trio_ws import (
    CloseCode,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
    State,
    WebSocketConnection,
    WebSocketServer,
    open_websocket_url,
    serve_websocket,
    wrap_client_stream,
    wrap_server_stream,
)
from trio_ws._streams import as_byte_stream
from trio_ws.client import _ClientOptions, _handshake
from trio_ws.connection import ConnectionContext
from trio_ws.protocol.frames import Close, Frame, Opcode, serialize_header
from trio_ws.protocol.handshake import ClientHandshake
from trio_ws.protocol.machine import Role

#: Upper bound on any wait in a test; virtual seconds on the trio clock tests.
TIMEOUT = 10

KEEPALIVE_TIMEOUT = "sent 1011 (internal error) keepalive ping timeout; no close frame received"

OTHER_SIDE = {"client": "server", "server": "client"}


def sides(pair: ConnectionPair, side: str) -> tuple[WebSocketConnection, WebSocketConnection]:
    """``(near, far)``: the connection playing ``side`` and its peer."""
    if side == "client":
        return pair.client, pair.server
    return pair.server, pair.client


def stream_of(pair: ConnectionPair, side: str) -> ControlledStream:
    """What the connection playing ``side`` reads from and writes to."""
    return pair.client_stream if side == "client" else pair.server_stream


def memory_stream(stream: ControlledStream) -> MemoryByteStream:
    inner = stream.stream
    assert isinstance(inner, MemoryByteStream)
    return inner


def state_of(ws: WebSocketConnection) -> State:
    """``ws.state``, read through a call so that mypy does not narrow it."""
    return ws.state


def assert_plain(exc: BaseException) -> None:
    """DESIGN: errors reach the user as plain exceptions, never as a group."""
    assert not isinstance(exc, BaseExceptionGroup)


async def collect(ws: WebSocketConnection, into: list[str | bytes]) -> None:
    """Iterate over ``ws`` with ``async for``, appending to ``into``."""
    async for message in ws:
        into.append(message)


def close_codes(frames: list[Frame]) -> list[int]:
    return [Close.parse(f.payload).code for f in frames if f.opcode is Opcode.CLOSE]


def options_for(side: str, near: dict[str, Any], far: dict[str, Any]) -> dict[str, Any]:
    """``client_options``/``server_options`` with ``near`` for ``side``."""
    if side == "client":
        return {"client_options": near, "server_options": far}
    return {"client_options": far, "server_options": near}


@asynccontextmanager
async def run_server(
    handler: Callable[[WebSocketConnection], Awaitable[None]], **options: Any
) -> AsyncIterator[WebSocketServer]:
    """Serve on a free port of 127.0.0.1 for the duration of the block."""
    async with anyio.create_task_group() as task_group:
        server: WebSocketServer = await task_group.start(
            functools.partial(serve_websocket, handler, "127.0.0.1", 0, **options)
        )
        try:
            yield server
        finally:
            task_group.cancel_scope.cancel()


def trio_ws_tasks() -> list[str]:
    """Names of the trio_ws tasks alive in this trio run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    names = []
    stack = [root]
    while stack:
        task = stack.pop()
        if task.name.startswith("trio_ws"):
            names.append(task.name)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


# -- receiving ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_recv_returns_str_for_text_and_bytes_for_binary() -> None:
    async with open_connection_pair() as pair:
        await pair.server.send("grüße")
        await pair.server.send(b"\x00\xff")
        await pair.server.send(bytearray(b"array"))
        await pair.server.send(memoryview(b"view"))
        await pair.server.send("")
        with anyio.fail_after(TIMEOUT):
            received = [await pair.client.recv() for _ in range(5)]
    assert received == ["grüße", b"\x00\xff", b"array", b"view", ""]
    assert [type(m) for m in received] == [str, bytes, bytes, bytes, str]


@pytest.mark.anyio
@pytest.mark.parametrize("code", [CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY])
async def test_async_for_ends_quietly_on_a_normal_close(code: int) -> None:
    async with open_connection_pair() as pair:
        await pair.server.send("one")
        await pair.server.send(b"two")
        await pair.server.aclose(code)
        with anyio.fail_after(TIMEOUT):
            received = [message async for message in pair.client]
    assert received == ["one", b"two"]


@pytest.mark.anyio
async def test_async_for_ends_quietly_on_a_close_frame_without_code() -> None:
    async with open_raw_pair("client") as raw:
        await raw.peer.send_frame(Frame(Opcode.TEXT, b"last"))
        await raw.peer.send_frame(Frame(Opcode.CLOSE, b""))
        with anyio.fail_after(TIMEOUT):
            received = [message async for message in raw.ws]
            assert received == ["last"]
            # The echo carries no code either.
            frame = await raw.peer.receive_frame()
            await raw.peer.stream.aclose()  # the server closes TCP first
            await raw.ws.wait_closed()
        assert frame == Frame(Opcode.CLOSE, b"")
        assert raw.ws.close_code == CloseCode.NO_STATUS_RCVD


@pytest.mark.anyio
@pytest.mark.parametrize("code", [CloseCode.INTERNAL_ERROR, 4000])
async def test_async_for_raises_on_an_error_close(code: int) -> None:
    async with open_connection_pair() as pair:
        await pair.server.send("one")
        await pair.server.aclose(code, "bad")
        received: list[str | bytes] = []
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError) as exc_info:
            await collect(pair.client, received)
    assert received == ["one"]
    assert exc_info.value.rcvd == Close(code, "bad")


@pytest.mark.anyio
async def test_async_for_raises_when_the_connection_is_lost() -> None:
    async with open_raw_pair("client") as raw:
        await raw.peer.send_frame(Frame(Opcode.TEXT, b"one"))
        await raw.peer.stream.aclose()
        received: list[str | bytes] = []
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError) as exc_info:
            await collect(raw.ws, received)
    assert received == ["one"]
    assert str(exc_info.value) == "no close frame received or sent"


@pytest.mark.anyio
async def test_concurrent_recv_raises_concurrency_error() -> None:
    async with open_connection_pair() as pair:
        received = []

        async def receive() -> None:
            received.append(await pair.client.recv())

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(ConcurrencyError):
                    await pair.client.recv()
                with pytest.raises(ConcurrencyError):
                    await anext(aiter(pair.client))
                await pair.server.send("for the first caller")
        assert received == ["for the first caller"]
        # Once the first caller is done, recv() works again.
        await pair.server.send("next")
        with anyio.fail_after(TIMEOUT):
            assert await pair.client.recv() == "next"


@pytest.mark.anyio
async def test_recv_loses_nothing_when_cancelled_at_random_points() -> None:
    """Thousands of recv() calls cancelled at random moments: before they
    start, while they wait, just after a message arrived. Every message
    still comes out once, in order."""
    count = 2000
    rng = random.Random(6455)
    received: list[str | bytes] = []
    cancelled = 0
    early = 0
    current: list[anyio.CancelScope] = []
    async with open_connection_pair(client_options={"max_queue": 4}) as pair:

        async def produce() -> None:
            for number in range(count):
                await pair.server.send(str(number))
                for _ in range(rng.randrange(6)):
                    await anyio.lowlevel.checkpoint()
            await pair.server.aclose()  # a lost message fails fast, not by timeout

        async def cancel_at_random() -> None:
            while True:
                for _ in range(rng.randrange(3)):
                    await anyio.lowlevel.checkpoint()
                if current:
                    current[0].cancel()

        async def consume() -> None:
            nonlocal cancelled, early
            while True:
                if rng.random() < 0.25:
                    # Cancelled before recv() even starts to wait.
                    with anyio.move_on_after(0) as expired:
                        received.append(await pair.client.recv())
                    early += expired.cancelled_caught
                with anyio.CancelScope() as scope:
                    current.append(scope)
                    received.append(await pair.client.recv())
                current.clear()
                cancelled += scope.cancelled_caught

        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(produce)
                task_group.start_soon(cancel_at_random)
                with pytest.raises(ConnectionClosedOK):
                    await consume()
                task_group.cancel_scope.cancel()
    assert received == [str(number) for number in range(count)]
    assert cancelled >= 1000
    assert cancelled + early >= 2000
    assert early > 0


# -- sending -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_send_copies_a_bytearray_before_returning() -> None:
    async with open_connection_pair() as pair:
        payload = bytearray(b"before")
        await pair.client.send(payload)
        payload[:] = b"after!"
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == b"before"


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize(
    "view",
    [
        memoryview(array.array("i", range(100))),
        memoryview(bytes(range(200))).cast("B", (20, 10)),
        memoryview(bytes(range(200)))[::3],
    ],
    ids=["int-items", "2d", "strided"],
)
async def test_send_memoryviews_of_any_shape(
    side: str, compression: str | None, view: memoryview
) -> None:
    """len() of a memoryview counts items, not bytes: every byte must go out."""
    options = {"compression": compression}
    async with open_connection_pair(client_options=options, server_options=options) as pair:
        near, far = sides(pair, side)
        await near.send(view)
        await near.send([view, view])
        await near.send("still in sync")
        with anyio.fail_after(TIMEOUT):
            assert await far.recv() == view.tobytes()
            assert await far.recv() == view.tobytes() * 2
            assert await far.recv() == "still in sync"


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize(
    ("fragments", "expected"),
    [
        (lambda: ["frag", "mented ", "tëxt"], "fragmented tëxt"),
        (lambda: (b"bin", bytearray(b"ary"), memoryview(b"!")), b"binary!"),
        (lambda: (c for c in "gen"), "gen"),
    ],
    ids=["text", "binary", "generator"],
)
async def test_send_iterable_delivers_one_whole_message(
    fragments: Callable[[], Any], expected: str | bytes, compression: str | None
) -> None:
    async with open_connection_pair(client_options={"compression": compression}) as pair:
        await pair.client.send(fragments())
        await pair.client.send("next")
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == expected
            assert await pair.server.recv() == "next"


@pytest.mark.anyio
async def test_send_async_iterable_delivers_one_whole_message() -> None:
    async def fragments() -> AsyncIterator[bytes]:
        for part in (b"as", b"ync"):
            await anyio.lowlevel.checkpoint()
            yield part

    async with open_connection_pair() as pair:
        await pair.client.send(fragments())
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == b"async"


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_send_iterable_is_fragmented_on_the_wire(side: str) -> None:
    async def fragments() -> AsyncIterator[str]:
        for part in ("a", "b", "c"):
            yield part

    async with open_raw_pair(side) as raw:
        await raw.ws.send(["ab", "cd", "é"])
        await raw.ws.send(fragments())
        await raw.ws.send([])  # nothing at all
        await raw.ws.send(b"whole")
        with anyio.fail_after(TIMEOUT):
            frames = [await raw.peer.receive_frame() for _ in range(9)]
    # The empty iterable sent nothing at all.
    assert frames == [
        Frame(Opcode.TEXT, b"ab", fin=False),
        Frame(Opcode.CONT, b"cd", fin=False),
        Frame(Opcode.CONT, "é".encode(), fin=False),
        Frame(Opcode.CONT, b"", fin=True),
        Frame(Opcode.TEXT, b"a", fin=False),
        Frame(Opcode.CONT, b"b", fin=False),
        Frame(Opcode.CONT, b"c", fin=False),
        Frame(Opcode.CONT, b"", fin=True),
        Frame(Opcode.BINARY, b"whole"),
    ]


@pytest.mark.anyio
async def test_concurrent_sends_never_interleave_frames_of_two_messages() -> None:
    release = anyio.Event()

    async def slow_fragments() -> AsyncIterator[str]:
        yield "f0"
        await release.wait()
        for number in range(1, 4):
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            yield f"f{number}"

    async def single_sender(name: str) -> None:
        for number in range(3):
            await pair.client.send(f"{name}{number}")
            await anyio.lowlevel.checkpoint()

    options = {"compression": None}
    async with open_connection_pair(client_options=options, server_options=options) as pair:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.send, slow_fragments())
                await anyio.wait_all_tasks_blocked()
                for name in "xyz":
                    task_group.start_soon(single_sender, name)
                # The single senders started while the fragmented message
                # was half sent; they must wait for it.
                await anyio.wait_all_tasks_blocked()
                release.set()
            received = [await pair.server.recv() for _ in range(10)]
        assert received[0] == "f0f1f2f3"
        assert sorted(received[1:]) == [f"{name}{n}" for name in "xyz" for n in range(3)]
        # On the wire: the four fragments and their end, then the others.
        frames = data_frames(pair.client_stream.written_frames())
        assert [f.opcode for f in frames[:5]] == [Opcode.TEXT] + [Opcode.CONT] * 4
        assert [f.fin for f in frames[:5]] == [False, False, False, False, True]
        assert all(f.opcode is Opcode.TEXT and f.fin for f in frames[5:])
        assert len(frames) == 14


@pytest.mark.anyio
@pytest.mark.parametrize(
    "message",
    [{"key": "value"}, 42, None, [1, 2], [{"a": 1}]],
    ids=["dict", "int", "none", "int-fragments", "dict-fragments"],
)
async def test_send_rejects_unsupported_types_and_the_connection_lives_on(message: Any) -> None:
    async with open_connection_pair() as pair:
        with pytest.raises(TypeError):
            await pair.client.send(message)
        await pair.client.send("still open")
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == "still open"
        assert pair.client.state is State.OPEN


@pytest.mark.anyio
@pytest.mark.parametrize("fragments", [["text", b"bytes"], [b"bytes", "text"], ["text", 3]])
async def test_send_mixed_fragments_raises_type_error_and_fails_with_1011(
    fragments: list[Any],
) -> None:
    async with open_connection_pair() as pair:
        with pytest.raises(TypeError):
            await pair.client.send(fragments)
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError) as exc_info:
            await pair.server.recv()
        assert exc_info.value.rcvd == Close(1011, "error in fragmented message")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await pair.client.send("too late")
        assert str(exc_info.value) == (
            "sent 1011 (internal error) error in fragmented message; no close frame received"
        )


@pytest.mark.anyio
async def test_failing_async_iterable_fails_the_connection_with_1011() -> None:
    class Boom(Exception):
        pass

    async def fragments() -> AsyncIterator[bytes]:
        yield b"start"
        raise Boom

    async with open_connection_pair() as pair:
        with pytest.raises(Boom):
            await pair.client.send(fragments())
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError) as exc_info:
            await pair.server.recv()
        assert str(exc_info.value) == (
            "received 1011 (internal error) error in fragmented message; "
            "then sent 1011 (internal error) error in fragmented message"
        )
        with anyio.fail_after(TIMEOUT):
            await pair.client.wait_closed()
        assert pair.client.state is State.CLOSED


@pytest.mark.anyio
async def test_cancelled_fragmented_send_fails_the_connection_with_1011() -> None:
    async def fragments() -> AsyncIterator[str]:
        yield "start"
        await anyio.sleep_forever()
        yield "never"  # pragma: no cover

    async with open_connection_pair() as pair:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.send, fragments())
                await anyio.wait_all_tasks_blocked()
                task_group.cancel_scope.cancel()
            with pytest.raises(ConnectionClosedError) as exc_info:
                await pair.server.recv()
            await pair.client.wait_closed()
        assert exc_info.value.rcvd == Close(1011, "error in fragmented message")
        assert pair.client.close_code == CloseCode.ABNORMAL_CLOSURE


@pytest.mark.anyio
async def test_cancelled_fragmented_send_before_the_first_fragment_fails_nothing() -> None:
    async def fragments() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"  # pragma: no cover

    async with open_connection_pair() as pair:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.send, fragments())
                await anyio.wait_all_tasks_blocked()
                task_group.cancel_scope.cancel()
            await pair.client.send("fine")
            assert await pair.server.recv() == "fine"


@pytest.mark.anyio
async def test_send_is_cancel_safe_all_or_nothing() -> None:
    """A send() either returns and its message arrives, or is cancelled and
    nothing of it is sent; with a small write_limit many sends wait."""
    count = 1000
    rng = random.Random(7692)
    sent: list[str] = []
    cancelled = 0
    current: list[anyio.CancelScope] = []
    options = {"write_limit": 0, "compression": None}
    async with open_connection_pair(client_options=options, capacity=256) as pair:

        async def cancel_at_random() -> None:
            while True:
                for _ in range(rng.randrange(4)):
                    await anyio.lowlevel.checkpoint()
                if current:
                    current[0].cancel()

        async def consume(received: list[str | bytes]) -> None:
            async for message in pair.server:
                received.append(message)

        received: list[str | bytes] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(cancel_at_random)
                task_group.start_soon(consume, received)
                for number in range(count):
                    message = f"{number:04d}" * 10
                    with anyio.CancelScope() as scope:
                        current.append(scope)
                        await pair.client.send(message)
                        sent.append(message)
                    current.clear()
                    cancelled += scope.cancelled_caught
                await pair.client.aclose()
                await pair.server.wait_closed()
                task_group.cancel_scope.cancel()
    assert received == sent
    assert 100 <= cancelled < count


# -- the writer ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_writer_coalesces_frames_queued_while_it_is_busy() -> None:
    async with open_connection_pair() as pair:
        stream = pair.client_stream
        stream.pause_writes()
        await pair.client.send("first")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_all_tasks_blocked()  # the writer waits in stream.send()
        before = len(stream.writes)
        for text in ("a", "b", "c"):
            await pair.client.send(text)
        await pair.client.ping(b"p")
        stream.resume_writes()
        with anyio.fail_after(TIMEOUT):
            assert [await pair.server.recv() for _ in range(4)] == ["first", "a", "b", "c"]
        writes = stream.writes[before - 1 :]
    assert [len(parse_frames(data)) for data in writes[:2]] == [1, 4]
    assert [f.opcode for f in parse_frames(writes[1])] == [Opcode.TEXT] * 3 + [Opcode.PING]


@pytest.mark.anyio
async def test_closing_wakes_the_idle_writer_and_heartbeat_instead_of_cancelling_them() -> None:
    """Idle when the connection closes, they are woken and return: cheaper
    than raising a cancellation through them."""
    async with open_connection_pair() as pair:
        await pair.client.send("x")
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == "x"
            await anyio.wait_all_tasks_blocked()
            idle_waits = [ws._heartbeat_wakeup for ws in (pair.client, pair.server)]
            assert None not in idle_waits  # both heartbeats wait to ping
            await pair.client.aclose()
            await pair.server.wait_closed()
            await anyio.wait_all_tasks_blocked()
        for ws, idle_wait in zip((pair.client, pair.server), idle_waits, strict=True):
            # Both writers ran (memory streams take no direct writes): the
            # client's for "x", the server's for its close frame.
            assert ws._writer_scope is not None
            assert not ws._writer_scope.cancel_called
            assert ws._writer_exited.is_set()
            assert idle_wait is not None
            assert idle_wait.is_set()  # woken, long before its timer
            assert ws._heartbeat_scope is None  # no scope: it never waited for a pong


@pytest.mark.anyio
async def test_a_connection_closing_before_its_heartbeat_runs_starts_no_timer() -> None:
    client_raw, server_raw = memory_stream_pair()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(functools.partial(wrap_server_stream, task_group, server_raw))
            client = await wrap_client_stream(task_group, client_raw, "localhost")
            # No checkpoint since: the client's tasks have not run yet.
            waits: list[float] = []
            wait_until = client._waits.wait_until

            async def recording_wait_until(wakeup: Any, deadline: float) -> None:
                waits.append(deadline)
                await wait_until(wakeup, deadline)

            client._waits = client._waits._replace(wait_until=recording_wait_until)
            await client.aclose()
    assert client.close_code == 1000
    assert waits == []  # it returned without waiting to ping
    assert client._heartbeat_scope is None  # nor for a pong


@pytest.mark.anyio
async def test_closing_still_cancels_a_writer_stuck_in_a_write() -> None:
    async with open_connection_pair(client_options={"close_timeout": 0.05}) as pair:
        pair.client_stream.pause_writes()
        await pair.client.send("never read")
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_all_tasks_blocked()  # the writer waits in stream.send()
            await pair.client.aclose()
        assert pair.client.state is State.CLOSED
        assert pair.client._writer_scope is not None
        assert pair.client._writer_scope.cancel_called


# -- backpressure ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_reader_stops_reading_while_max_queue_messages_wait() -> None:
    total = 500
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for number in range(total):
            await pair.client.send(f"{number:03d}" * 30)
            sent += 1

    options = {"compression": None}
    async with open_connection_pair(
        capacity=1000,
        client_options={**options, "write_limit": 0},
        server_options={**options, "max_queue": 4},
    ) as pair:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                # The server does not read from TCP although bytes wait: the
                # sender is blocked by a full pipe, not by a busy reader.
                assert memory_stream(pair.server_stream).unread > 0
                stalled_at = sent
                assert stalled_at < 50
                # Reading a few messages lets the reader, then the sender, go on.
                received = [await pair.server.recv() for _ in range(4)]
                await anyio.wait_all_tasks_blocked()
                assert sent > stalled_at
                received += [await pair.server.recv() for _ in range(total - 4)]
    assert received == [f"{number:03d}" * 30 for number in range(total)]


@pytest.mark.anyio
async def test_reader_stops_reading_while_a_mebibyte_of_messages_waits() -> None:
    # max_queue (16) large messages would be 16 times max_size in memory:
    # the reader also stops once what waits totals 1 MiB, and reads again
    # once recv() brought it under half of that.
    size, total = 300_000, 20
    payloads = [bytes([number]) * size for number in range(total)]
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for payload in payloads:
            await pair.client.send(payload)
            sent += 1

    options = {"compression": None, "max_size": None}
    async with open_connection_pair(
        capacity=4 * size,
        client_options={**options, "write_limit": 0},
        server_options=options,
    ) as pair:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                # 4 messages (1.2 MB) wait, not 16: the reader stopped
                # although bytes wait in the pipe and the sender is blocked.
                queued = pair.server._messages
                assert queued is not None
                assert len(queued) == 4
                assert memory_stream(pair.server_stream).unread > 0
                stalled_at = sent
                assert stalled_at < total
                # Down to 600 KB: still stopped.
                received = [await pair.server.recv() for _ in range(2)]
                await anyio.wait_all_tasks_blocked()
                assert len(queued) == 2
                assert sent == stalled_at
                # Under 512 KiB: reading resumes, and with it the sender.
                received.append(await pair.server.recv())
                await anyio.wait_all_tasks_blocked()
                assert sent > stalled_at
                assert len(queued) <= 4
                received += [await pair.server.recv() for _ in range(total - 3)]
    assert received == payloads


@pytest.mark.anyio
async def test_send_waits_while_more_than_write_limit_bytes_are_unsent() -> None:
    options = {"compression": None, "write_limit": 1000}
    payload = b"x" * 500  # 508 bytes on the wire: 4 header, 4 mask
    outcome: dict[str, bool] = {}

    async def send(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await pair.client.send(name.encode())
            outcome[name] = True

    async with open_connection_pair(client_options=options) as pair:
        pair.client_stream.pause_writes()  # the peer reads nothing
        with anyio.fail_after(TIMEOUT):
            await pair.client.send(payload)  # 508 unsent
            await pair.client.send(payload)  # 508 <= 1000 before: no wait; 1016 now
            async with anyio.create_task_group() as task_group:
                cancelled = anyio.CancelScope()
                task_group.start_soon(send, "cancelled", cancelled)
                task_group.start_soon(send, "waiting", anyio.CancelScope())
                await anyio.wait_all_tasks_blocked()
                assert outcome == {}
                cancelled.cancel()
                await anyio.wait_all_tasks_blocked()
                pair.client_stream.resume_writes()
            assert outcome == {"waiting": True}
            await pair.client.send(b"after")
            received = [await pair.server.recv() for _ in range(4)]
    # The cancelled send() queued nothing.
    assert received == [payload, payload, b"waiting", b"after"]


# -- keepalive (virtual time) -------------------------------------------------------


@pytest.mark.trio
async def test_keepalive_pings_every_ping_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(
        client_options={"ping_interval": 10, "ping_timeout": 5},
        server_options={"ping_interval": None},
    ) as pair:
        await trio.sleep(35)
        pings = [f for f in pair.client_stream.written_frames() if f.opcode is Opcode.PING]
        pongs = [f for f in pair.server_stream.written_frames() if f.opcode is Opcode.PONG]
        assert len(pings) == 3
        assert [f.payload for f in pongs] == [f.payload for f in pings]
        assert pair.client.state is State.OPEN
        # The server, which does not ping, sent nothing but pongs.
        assert not [f for f in pair.server_stream.written_frames() if f.opcode is Opcode.PING]


@pytest.mark.trio
async def test_keepalive_updates_latency(autojump_clock: trio.testing.MockClock) -> None:
    async with open_connection_pair(client_options={"ping_interval": 10}) as pair:
        assert pair.client.latency == 0.0
        pair.server_stream.write_delay = 0.25
        await trio.sleep(11)
        assert pair.client.latency == pytest.approx(0.25)


@pytest.mark.trio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_keepalive_timeout_fails_the_connection_with_1011(
    side: str, autojump_clock: trio.testing.MockClock
) -> None:
    keepalive = {"ping_interval": 10, "ping_timeout": 5}
    async with open_connection_pair(
        **options_for(side, keepalive, {"ping_interval": None})
    ) as pair:
        near, far = sides(pair, side)
        stream_of(pair, OTHER_SIDE[side]).pause_reads()  # the peer hears nothing
        errors: list[ConnectionClosedError] = []

        async def waiting_recv() -> None:
            try:
                await near.recv()
            except ConnectionClosedError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting_recv)
            await trio.sleep(14.5)  # the ping went out at 10; no pong yet
            assert near.state is State.OPEN
            assert errors == []
            with trio.fail_after(1):
                await near.wait_closed()
        assert len(errors) == 1
        assert str(errors[0]) == KEEPALIVE_TIMEOUT
        assert errors[0].__cause__ is None
        with pytest.raises(ConnectionClosedError, match=r"^sent 1011 .*keepalive") as exc_info:
            await near.send("late")
        assert str(exc_info.value) == KEEPALIVE_TIMEOUT
        with pytest.raises(ConnectionClosedError) as exc_info:
            await near.recv()
        assert str(exc_info.value) == KEEPALIVE_TIMEOUT
        assert state_of(near) is State.CLOSED
        assert near.close_code == CloseCode.ABNORMAL_CLOSURE
        # The peer, once it listens again, finds the connection gone: it
        # reads the 1011, or fails to write its pong first.
        stream_of(pair, OTHER_SIDE[side]).resume_reads()
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError) as exc_info:
            await far.recv()
        assert exc_info.value.rcvd in (None, Close(1011, "keepalive ping timeout"))


@pytest.mark.trio
async def test_keepalive_logs_the_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with open_connection_pair(
        client_options={"ping_interval": 10, "ping_timeout": 5},
        server_options={"ping_interval": None},
    ) as pair:
        pair.server_stream.pause_reads()
        with trio.fail_after(TIMEOUT * 3):
            await pair.client.wait_closed()
    [record] = [r for r in caplog.records if "keepalive" in r.getMessage()]
    assert record.websocket is pair.client  # type: ignore[attr-defined]  # LoggerAdapter extra


@pytest.mark.trio
async def test_ping_interval_none_sends_no_pings(autojump_clock: trio.testing.MockClock) -> None:
    async with open_connection_pair(
        client_options={"ping_interval": None}, server_options={"ping_interval": 10}
    ) as pair:
        await trio.sleep(105)
        client_frames = pair.client_stream.written_frames()
        assert not [f for f in client_frames if f.opcode is Opcode.PING]
        # Time did pass: the client answered the server's pings.
        assert len([f for f in client_frames if f.opcode is Opcode.PONG]) == 10


@pytest.mark.trio
async def test_ping_timeout_none_pings_but_never_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(
        client_options={"ping_interval": 10, "ping_timeout": None},
        server_options={"ping_interval": None},
    ) as pair:
        pair.server_stream.pause_reads()
        await trio.sleep(1005)
        assert pair.client.state is State.OPEN
        pings = [f for f in pair.client_stream.written_frames() if f.opcode is Opcode.PING]
        assert len(pings) == 100


@pytest.mark.anyio
async def test_ping_returns_a_waiter_for_the_latency() -> None:
    async with open_connection_pair() as pair:
        with anyio.fail_after(TIMEOUT):
            latency = await (await pair.client.ping())
            assert isinstance(latency, float)
            assert latency >= 0.0
            waiter = await pair.server.ping("text payload")
            assert isinstance(await waiter.wait(), float)
            assert waiter.done()
            assert pair.server.latency == await waiter


@pytest.mark.anyio
async def test_ping_with_a_payload_already_waiting_raises_value_error() -> None:
    async with open_connection_pair() as pair:
        pair.server_stream.pause_reads()
        first = await pair.client.ping(b"same")
        with pytest.raises(ValueError, match="same payload"):
            await pair.client.ping(b"same")
        with pytest.raises(ValueError, match="125"):
            await pair.client.ping(b"x" * 126)
        assert not first.done()
        # Giving up on a waiter is safe: the ping stays outstanding.
        with anyio.move_on_after(0) as scope:
            await first
        assert scope.cancelled_caught
        pair.server_stream.resume_reads()
        with anyio.fail_after(TIMEOUT):
            await first
            # Answered, so the payload is free again.
            await (await pair.client.ping(b"same"))


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_incoming_pings_are_answered_without_recv(side: str) -> None:
    async with open_raw_pair(side) as raw:
        await raw.peer.send_frame(Frame(Opcode.PING, b"are you there?"))
        with anyio.fail_after(TIMEOUT):
            assert await raw.peer.receive_frame() == Frame(Opcode.PONG, b"are you there?")


@pytest.mark.anyio
async def test_a_pong_acknowledges_earlier_pings_too() -> None:
    async with open_raw_pair("client") as raw:
        first = await raw.ws.ping(b"1")
        second = await raw.ws.ping(b"2")
        with anyio.fail_after(TIMEOUT):
            assert [await raw.peer.receive_frame() for _ in range(2)] == [
                Frame(Opcode.PING, b"1"),
                Frame(Opcode.PING, b"2"),
            ]
            await raw.peer.send_frame(Frame(Opcode.PONG, b"unsolicited"))
            await raw.peer.send_frame(Frame(Opcode.PONG, b"2"))
            assert isinstance(await first, float)
            assert isinstance(await second, float)
            assert raw.ws.latency == await second


@pytest.mark.anyio
async def test_ping_waiter_raises_when_the_connection_closes_first() -> None:
    async with open_raw_pair("client") as raw:
        waiter = await raw.ws.ping()
        await raw.peer.stream.aclose()
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError):
            await waiter
        assert waiter.done()
        with pytest.raises(ConnectionClosedError):
            await raw.ws.ping()


@pytest.mark.anyio
async def test_pong_sends_an_unsolicited_pong() -> None:
    async with open_raw_pair("server") as raw:
        await raw.ws.pong(b"heartbeat")
        await raw.ws.pong("text")
        await raw.ws.pong()
        with anyio.fail_after(TIMEOUT):
            frames = [await raw.peer.receive_frame() for _ in range(3)]
    assert frames == [
        Frame(Opcode.PONG, b"heartbeat"),
        Frame(Opcode.PONG, b"text"),
        Frame(Opcode.PONG, b""),
    ]


# -- a lost connection ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize(("how", "cause"), [("eof", EOFError), ("reset", ConnectionResetError)])
async def test_connection_lost_without_a_close_frame(
    side: str, how: str, cause: type[BaseException]
) -> None:
    async with open_raw_pair(side) as raw:
        errors: list[ConnectionClosedError] = []

        async def waiting_recv() -> None:
            try:
                await raw.ws.recv()
            except ConnectionClosedError as exc:
                errors.append(exc)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(waiting_recv)
                await anyio.wait_all_tasks_blocked()
                if how == "eof":
                    await raw.peer.stream.aclose()
                else:
                    memory_stream(raw.peer.stream).abort()
            await raw.ws.wait_closed()
        [error] = errors
        assert str(error) == "no close frame received or sent"
        assert isinstance(error.__cause__, cause)
        assert error.code == CloseCode.ABNORMAL_CLOSURE
        assert raw.ws.state is State.CLOSED
        assert raw.ws.close_code == CloseCode.ABNORMAL_CLOSURE
        assert raw.ws.close_reason == ""
        with pytest.raises(ConnectionClosedError, match=r"^no close frame received or sent$"):
            await raw.ws.send("late")


@pytest.mark.anyio
async def test_connection_lost_while_the_writer_writes() -> None:
    async with open_connection_pair(capacity=100, server_options={"compression": None}) as pair:
        pair.client_stream.pause_reads()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.server.send, b"x" * 1000)
                await anyio.wait_all_tasks_blocked()  # the writer waits for room
                memory_stream(pair.client_stream).abort()
            await pair.server.wait_closed()
            with pytest.raises(ConnectionClosedError) as exc_info:
                await pair.server.recv()
        assert str(exc_info.value) == "no close frame received or sent"
        assert isinstance(exc_info.value.__cause__, OSError)


@pytest.mark.anyio
async def test_tcp_reset_surfaces_the_os_error() -> None:
    errors: list[BaseException] = []
    handler_done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosedError as exc:
            errors.append(exc)
        finally:
            handler_done.set()

    async with run_server(handler) as server:
        sock = socket.socket()
        try:
            sock.setblocking(False)
            with anyio.fail_after(TIMEOUT):
                try:
                    sock.connect(("127.0.0.1", server.port))
                except BlockingIOError:
                    pass
                await anyio.wait_writable(sock)
                handshake = ClientHandshake("127.0.0.1", "/", compression=None)
                sock.send(handshake.data_to_send())
                while not handshake.complete:
                    await anyio.wait_readable(sock)
                    handshake.receive_data(sock.recv(65536))
                assert handshake.accepted
                # SO_LINGER with a zero timeout: close() sends a RST, not a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()
        with anyio.fail_after(TIMEOUT):
            await handler_done.wait()
    [error] = errors
    assert str(error) == "no close frame received or sent"
    assert isinstance(error.__cause__, OSError)


# -- closing ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_aclose_performs_the_closing_handshake() -> None:
    async with open_connection_pair() as pair:
        with anyio.fail_after(TIMEOUT):
            await pair.client.aclose()
            assert pair.client.state is State.CLOSED
            await pair.server.wait_closed()
        assert pair.server_stream.closed
        assert pair.client_stream.closed
        assert close_codes(pair.client_stream.written_frames()) == [1000]
        assert close_codes(pair.server_stream.written_frames()) == [1000]
        with pytest.raises(ConnectionClosedOK) as exc_info:
            await pair.client.recv()
        assert str(exc_info.value) == "sent 1000 (OK); then received 1000 (OK)"
        with pytest.raises(ConnectionClosedOK) as exc_info:
            await pair.server.recv()
        assert str(exc_info.value) == "received 1000 (OK); then sent 1000 (OK)"
        for ws in (pair.client, pair.server):
            assert ws.close_code == 1000
            assert ws.close_reason == ""
            with pytest.raises(ConnectionClosedOK):
                await ws.send("late")
            with pytest.raises(ConnectionClosedOK):
                await ws.ping()
            with pytest.raises(ConnectionClosedOK):
                await ws.pong()


@pytest.mark.anyio
@pytest.mark.parametrize("closer", ["client", "server"])
@pytest.mark.parametrize(
    ("code", "reason", "ok"),
    [
        (CloseCode.GOING_AWAY, "", True),
        (CloseCode.NORMAL_CLOSURE, "bye", True),
        (CloseCode.POLICY_VIOLATION, "go away", False),
        (4001, "custom", False),
    ],
)
async def test_close_code_and_reason_reach_both_sides(
    closer: str, code: int, reason: str, ok: bool
) -> None:
    async with open_connection_pair() as pair:
        near, far = sides(pair, closer)
        await near.aclose(code, reason)
        with anyio.fail_after(TIMEOUT):
            await far.wait_closed()
        expected = str(Close(code, reason))
        with pytest.raises(ConnectionClosed) as near_info:
            await near.recv()
        with pytest.raises(ConnectionClosed) as far_info:
            await far.recv()
    assert str(near_info.value) == f"sent {expected}; then received {expected}"
    assert str(far_info.value) == f"received {expected}; then sent {expected}"
    expected_class = ConnectionClosedOK if ok else ConnectionClosedError
    assert type(near_info.value) is expected_class
    assert type(far_info.value) is expected_class
    for ws in (near, far):
        assert ws.close_code == code
        assert ws.close_reason == reason


@pytest.mark.anyio
async def test_going_away_message_reads_as_documented() -> None:
    async with open_connection_pair() as pair:
        await pair.server.aclose(CloseCode.GOING_AWAY)
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedOK) as exc_info:
            await pair.client.recv()
    assert str(exc_info.value) == "received 1001 (going away); then sent 1001 (going away)"


@pytest.mark.anyio
async def test_messages_received_before_the_close_are_returned_first() -> None:
    async with open_connection_pair() as pair:
        for text in ("a", "b", "c"):
            await pair.server.send(text)
        await pair.server.aclose()
        with anyio.fail_after(TIMEOUT):
            await pair.client.wait_closed()
        assert pair.client.state is State.CLOSED
        assert [await pair.client.recv() for _ in range(3)] == ["a", "b", "c"]
        with pytest.raises(ConnectionClosedOK):
            await pair.client.recv()


@pytest.mark.anyio
@pytest.mark.parametrize("closer", ["client", "server"])
async def test_close_code_is_known_as_soon_as_recv_raises(closer: str) -> None:
    """``async for`` ends when the close frame arrives, maybe before TCP is
    closed; close_code and close_reason must already tell why."""
    async with open_connection_pair() as pair:
        near, far = sides(pair, closer)
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(near.aclose, 4321, "why")
                with pytest.raises(ConnectionClosedError):
                    await far.recv()
                # No checkpoint since recv() raised.
                assert (far.close_code, far.close_reason) == (4321, "why")
            await far.wait_closed()
        assert (far.close_code, far.close_reason) == (4321, "why")
        assert (near.close_code, near.close_reason) == (4321, "why")


@pytest.mark.anyio
async def test_aclose_twice_and_from_several_tasks() -> None:
    async with open_connection_pair() as pair:
        pair.server_stream.pause_reads()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.aclose)
                await anyio.wait_all_tasks_blocked()
                for _ in range(3):
                    task_group.start_soon(pair.client.aclose)
                task_group.start_soon(pair.client.aclose, 4000, "ignored, already closing")
                await anyio.wait_all_tasks_blocked()
                assert pair.client.state is State.CLOSING
                pair.server_stream.resume_reads()
            await pair.client.aclose()
            await pair.server.wait_closed()
        assert close_codes(pair.client_stream.written_frames()) == [1000]
        assert pair.server.close_code == 1000


@pytest.mark.anyio
async def test_aclose_rejects_a_bad_code_or_reason_at_once() -> None:
    async with open_connection_pair() as pair:
        with pytest.raises(ValueError, match="may not be sent"):
            await pair.client.aclose(CloseCode.ABNORMAL_CLOSURE)
        with pytest.raises(ValueError, match="longer"):
            await pair.client.aclose(1000, "x" * 124)
        assert pair.client.state is State.OPEN
        await pair.client.send("still open")
        with anyio.fail_after(TIMEOUT):
            assert await pair.server.recv() == "still open"


@pytest.mark.anyio
async def test_aclose_during_a_fragmented_send_stays_a_normal_close() -> None:
    release = anyio.Event()

    async def fragments() -> AsyncGenerator[str, None]:
        yield "first"
        await release.wait()
        yield "second"

    async def send_fragments() -> None:
        async with aclosing(fragments()) as iterator:
            with pytest.raises(ConnectionClosed):
                await pair.client.send(iterator)

    async with open_connection_pair() as pair:
        pair.server_stream.pause_reads()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send_fragments)
                await anyio.wait_all_tasks_blocked()
                task_group.start_soon(pair.client.aclose)
                await anyio.wait_all_tasks_blocked()
                release.set()  # the next fragment finds the connection closing
                await anyio.wait_all_tasks_blocked()
                pair.server_stream.resume_reads()
            await pair.server.wait_closed()
        assert close_codes(pair.client_stream.written_frames()) == [1000]
        assert pair.client.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await pair.client.recv()


@pytest.mark.trio
async def test_a_clean_close_takes_no_time(autojump_clock: trio.testing.MockClock) -> None:
    async with open_connection_pair(client_options={"close_timeout": 5}) as pair:
        start = trio.current_time()
        await pair.client.aclose()
        assert trio.current_time() == start
        assert pair.client.close_code == 1000


@pytest.mark.trio
async def test_aclose_gives_up_after_close_timeout_when_the_peer_never_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(client_options={"close_timeout": 3}) as pair:
        pair.server_stream.pause_reads()
        start = trio.current_time()
        await pair.client.aclose()
        assert trio.current_time() - start == pytest.approx(3)
        assert pair.client.state is State.CLOSED
        assert pair.client.close_code == CloseCode.ABNORMAL_CLOSURE
        assert pair.client_stream.closed
        with pytest.raises(ConnectionClosedError) as exc_info:
            await pair.client.recv()
        assert str(exc_info.value) == "sent 1000 (OK); no close frame received"


@pytest.mark.trio
async def test_client_waits_for_the_server_to_close_tcp_at_most_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 6455 §7.1.1: the server closes TCP first; a client waits for it,
    but not beyond close_timeout."""
    async with open_connection_pair(client_options={"close_timeout": 4}) as pair:
        pair.server_stream.drop_eof = True
        start = trio.current_time()
        await pair.client.aclose()
        assert trio.current_time() - start == pytest.approx(4)
        # The handshake itself completed: this is a normal close.
        assert pair.client.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await pair.client.recv()


@pytest.mark.trio
async def test_server_closes_tcp_right_after_the_handshake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(server_options={"close_timeout": 4}) as pair:
        start = trio.current_time()
        await pair.server.aclose()
        assert trio.current_time() == start
        assert pair.server_stream.closed


@pytest.mark.trio
async def test_cancelled_aclose_goes_on_in_the_background(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(client_options={"close_timeout": 10}) as pair:
        pair.server_stream.pause_reads()
        with trio.move_on_after(1):
            await pair.client.aclose()
        assert pair.client.state is State.CLOSING
        assert pair.client.close_code is None
        with trio.fail_after(10):
            await pair.client.wait_closed()
        assert state_of(pair.client) is State.CLOSED


@pytest.mark.trio
async def test_close_timeout_also_bounds_a_writer_stuck_on_a_full_pipe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_connection_pair(
        capacity=100,
        client_options={"close_timeout": 2, "compression": None},
    ) as pair:
        pair.server_stream.pause_reads()
        await pair.client.send(b"x" * 1000)  # the writer blocks: the pipe is full
        start = trio.current_time()
        await pair.client.aclose()
        assert trio.current_time() - start == pytest.approx(2)
        assert pair.client.state is State.CLOSED


# -- errors leave as plain exceptions -------------------------------------------------


async def echo(ws: WebSocketConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.anyio
async def test_user_exception_leaves_open_websocket_url_unchanged() -> None:
    class Oops(Exception):
        pass

    closes: list[ConnectionClosed] = []
    handler_done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            closes.append(exc)
        finally:
            handler_done.set()

    oops = Oops("mine")
    async with run_server(handler) as server:
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(Oops) as exc_info:
                async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    raise oops
            assert exc_info.value is oops
            assert_plain(exc_info.value)
            assert ws.state is State.CLOSED
            await handler_done.wait()
    assert closes[0].rcvd == Close(1011, "")


@pytest.mark.anyio
async def test_connection_closed_error_leaves_open_websocket_url_unchanged() -> None:
    async def handler(ws: WebSocketConnection) -> None:
        await ws.aclose(4000, "custom")

    async with run_server(handler) as server:
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(ConnectionClosedError) as exc_info:
                async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.recv()
    assert_plain(exc_info.value)
    assert exc_info.value.rcvd == Close(4000, "custom")


@pytest.mark.anyio
async def test_connection_refused_raises_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed below: nothing listens there
    # The error says what happened, not anyio's "All connection attempts failed".
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionRefusedError) as exc_info:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/"):
            pytest.fail("connected to a closed port")  # pragma: no cover
    assert_plain(exc_info.value)
    assert "All connection attempts failed" not in str(exc_info.value)


def test_connect_errors_from_several_addresses_are_combined() -> None:
    from trio_ws.client import _clearer_connect_error

    refused = [
        ConnectionRefusedError(111, f"Error connecting to {a}") for a in ("::1", "127.0.0.1")
    ]
    generic = OSError("All connection attempts failed")
    generic.__cause__ = ExceptionGroup("multiple connection attempts failed", refused)
    error = _clearer_connect_error(generic)
    assert type(error) is ConnectionRefusedError
    assert str(error) == "[Errno 111] Error connecting to ::1; Error connecting to 127.0.0.1"
    mixed = OSError("All connection attempts failed")
    mixed.__cause__ = ExceptionGroup("x", [refused[0], TimeoutError(110, "timed out")])
    # OSError(errno, ...) picks its subclass from the errno: the first one's.
    assert str(_clearer_connect_error(mixed)) == "[Errno 111] Error connecting to ::1; timed out"
    real = ConnectionResetError(104, "reset")
    assert _clearer_connect_error(real) is real


@pytest.mark.anyio
async def test_cancelling_the_block_closes_with_1001() -> None:
    closes: list[ConnectionClosed] = []
    handler_done = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            closes.append(exc)
        finally:
            handler_done.set()

    async with run_server(handler) as server:
        with anyio.fail_after(TIMEOUT):
            with anyio.CancelScope() as scope:
                async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    scope.cancel()
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
            assert ws.state is State.CLOSED
            await handler_done.wait()
    assert str(closes[0]) == "received 1001 (going away); then sent 1001 (going away)"
    assert isinstance(closes[0], ConnectionClosedOK)


class Oops(Exception):
    """An error of the user's own."""


async def _leave_past_a_deadline(
    *, deadline: float, close_timeout: float, body_raises: bool
) -> tuple[bool, BaseException | None, WebSocketConnection]:
    """Leave ``async with`` with ``deadline`` seconds left on a scope around
    it while the peer never answers the close, so the deadline expires during
    the shielded close. Return whether the deadline's scope caught a cancellation, what
    came out of it, and the connection."""
    client_raw, server_raw = memory_stream_pair()
    server_stream = ControlledStream(server_raw)
    options = _ClientOptions(close_timeout=close_timeout)
    context = ConnectionContext(lambda: _handshake(client_raw, "localhost", "/", options))
    connections: list[WebSocketConnection] = []
    async with anyio.create_task_group() as task_group:

        async def accept() -> None:
            connections.append(await wrap_server_stream(task_group, server_stream))

        task_group.start_soon(accept)
        error: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                async with context as ws:
                    await anyio.wait_all_tasks_blocked()
                    server_stream.pause_reads()
                    # The clock starts as we leave the block.
                    scope.deadline = anyio.current_time() + deadline
                    if body_raises:
                        raise Oops
        except Exception as exc:
            error = exc
        assert connections[0].state is State.OPEN
        server_stream.resume_reads()
    return scope.cancelled_caught, error, ws


@pytest.mark.trio
async def test_user_exception_survives_a_deadline_that_expires_while_closing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The shielded close outlives the enclosing deadline; the user's error
    must still come out, not a Cancelled that the deadline then swallows."""
    start = trio.current_time()
    _, error, ws = await _leave_past_a_deadline(deadline=5, close_timeout=10, body_raises=True)
    assert isinstance(error, Oops)
    assert trio.current_time() - start == pytest.approx(10)
    assert ws.state is State.CLOSED


@pytest.mark.anyio
async def test_user_exception_survives_a_deadline_on_both_backends() -> None:
    with anyio.fail_after(TIMEOUT):
        _, error, _ = await _leave_past_a_deadline(
            deadline=0.02, close_timeout=0.1, body_raises=True
        )
    assert isinstance(error, Oops)


@pytest.mark.anyio
async def test_a_deadline_that_expires_while_closing_still_cancels() -> None:
    with anyio.fail_after(TIMEOUT):
        caught, error, ws = await _leave_past_a_deadline(
            deadline=0.02, close_timeout=0.1, body_raises=False
        )
    assert caught
    assert error is None
    assert ws.state is State.CLOSED


async def _answer_closes(peer: RawPeer, frames: list[Frame], *, close_tcp: bool) -> None:
    """Play a well-behaved raw peer: echo the close frame, then close TCP if
    we are the server."""
    while (frame := await peer.receive_frame()) is not None:
        frames.append(frame)
        if frame.opcode is Opcode.CLOSE:
            await peer.send_frame(frame)
            if close_tcp:
                await peer.stream.aclose()
                return


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("when", ["before-the-tasks-run", "while-idle", "while-closing"])
async def test_cancelling_the_task_group_still_closes_with_1001(side: str, when: str) -> None:
    """Cancelling the task group that runs a connection (or a scope around it)
    stops every task of ours, the writer too; the close frame still goes out."""
    near, far_raw = memory_stream_pair()
    far = ControlledStream(far_raw)
    frames: list[Frame] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as outer:

            async def run_peer() -> None:
                if side == "client":
                    peer = await raw_server_handshake(far)
                else:
                    peer = await raw_client_handshake(far)
                await _answer_closes(peer, frames, close_tcp=side == "client")

            outer.start_soon(run_peer)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as task_group:
                    if side == "client":
                        ws = await wrap_client_stream(task_group, near, "localhost")
                    else:
                        ws = await wrap_server_stream(task_group, near)
                    if when != "before-the-tasks-run":
                        await anyio.wait_all_tasks_blocked()
                    if when == "while-closing":
                        far.pause_reads()
                        await ws.send("last words")
                        outer.start_soon(ws.aclose, 4000, "closing")
                        await anyio.wait_all_tasks_blocked()
                        far.resume_reads()
                    scope.cancel()
            await ws.wait_closed()
    code = 4000 if when == "while-closing" else CloseCode.GOING_AWAY
    assert close_codes(frames) == [code]
    assert ws.close_code == code


@pytest.mark.trio
async def test_cancelling_the_task_group_waits_at_most_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    near, far_raw = memory_stream_pair()
    far = ControlledStream(far_raw)
    peers: list[RawPeer] = []

    async def accept() -> None:
        peers.append(await raw_server_handshake(far))

    async with trio.open_nursery() as outer:
        outer.start_soon(accept)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(nursery, near, "localhost", close_timeout=7)
                start = trio.current_time()
                scope.cancel()  # and the raw peer reads nothing
    assert trio.current_time() - start == pytest.approx(7)
    assert ws.state is State.CLOSED
    frames = await peers[0].receive_until_eof()
    assert close_codes(frames) == [CloseCode.GOING_AWAY]


# -- no task outlives its block ----------------------------------------------------------


@pytest.mark.trio
async def test_no_task_outlives_the_connection_in_a_trio_nursery() -> None:
    """DESIGN: wrap_client_stream over trio.testing.memory_stream_pair()."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        servers: list[WebSocketConnection] = []

        async def accept() -> None:
            servers.append(await wrap_server_stream(nursery, server_stream))

        nursery.start_soon(accept)
        client = await wrap_client_stream(nursery, client_stream, "localhost", "/chat")
        await trio.testing.wait_all_tasks_blocked()
        [server] = servers
        assert server.request is not None
        assert server.request.path == "/chat"
        # Each side's reader and heartbeat; a writer starts with the first
        # write that has to wait for one (every write, on memory streams).
        assert sorted(trio_ws_tasks()) == ["trio_ws heartbeat"] * 2 + ["trio_ws reader"] * 2
        await client.send("hello")
        assert await server.recv() == "hello"
        await server.send(b"back")
        assert await client.recv() == b"back"
        assert sorted(trio_ws_tasks()).count("trio_ws writer") == 2
        with trio.fail_after(TIMEOUT):
            await client.aclose()
            await server.wait_closed()
        await trio.testing.wait_all_tasks_blocked()
        assert trio_ws_tasks() == []
        assert not nursery.child_tasks
        assert client.close_code == server.close_code == 1000


@pytest.mark.trio
async def test_no_task_outlives_open_websocket_url() -> None:
    async with run_server(echo) as server:
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("ping")
                assert await ws.recv() == "ping"
                assert any(name.startswith("trio_ws reader") for name in trio_ws_tasks())
            assert ws.state is State.CLOSED
            client_tasks = [name for name in trio_ws_tasks() if str(ws.id) in name]
            assert client_tasks == []


@pytest.mark.anyio
async def test_leaving_async_with_closes_the_connection() -> None:
    async with run_server(echo) as server:
        with anyio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            assert ws.state is State.CLOSED
            assert ws.close_code == 1000


# -- attributes ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_state_moves_from_connecting_to_closed() -> None:
    seen: list[State] = []

    def process_request(ws: WebSocketConnection, request: object) -> None:
        seen.append(ws.state)

    async with open_connection_pair(server_options={"process_request": process_request}) as pair:
        assert seen == [State.CONNECTING]
        assert pair.client.state is State.OPEN
        assert pair.server.state is State.OPEN
        assert pair.client.close_code is None
        assert pair.client.close_reason is None
        pair.server_stream.pause_reads()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.aclose)
                await anyio.wait_all_tasks_blocked()
                assert state_of(pair.client) is State.CLOSING
                assert state_of(pair.server) is State.OPEN
                assert pair.client.close_code is None
                pair.server_stream.resume_reads()
            await pair.server.wait_closed()
        assert state_of(pair.client) is State.CLOSED
        assert state_of(pair.server) is State.CLOSED
        assert "CLOSED" in repr(pair.client)


@pytest.mark.anyio
async def test_id_repr_and_logger() -> None:
    custom = logging.getLogger("tests.custom")
    async with open_connection_pair(server_options={"logger": custom}) as pair:
        assert pair.client.id != pair.server.id
        assert str(pair.client.id) in repr(pair.client)
        assert repr(pair.client).startswith("<WebSocketConnection client OPEN")
        assert pair.client.logger.logger is logging.getLogger("trio_ws.client")
        assert pair.server.logger.logger is custom
        for ws in (pair.client, pair.server):
            assert ws.logger.extra is not None
            assert ws.logger.extra["websocket"] is ws


@pytest.mark.anyio
async def test_subprotocol_request_path_headers_and_cookies() -> None:
    async with open_connection_pair(
        resource="/chat?room=1",
        client_options={
            "subprotocols": ["chat", "superchat"],
            "additional_headers": [("Cookie", "a=1; b=two"), ("X-Test", "yes")],
        },
        server_options={"subprotocols": ["superchat"]},
    ) as pair:
        assert pair.client.subprotocol == pair.server.subprotocol == "superchat"
        request = pair.server.request
        assert request is not None
        assert request.path == "/chat?room=1"
        assert request.resource == "/chat"
        assert request.headers["X-Test"] == "yes"
        assert request.cookies == {"a": "1", "b": "two"}
        assert pair.client.request is not None
        assert pair.client.request.path == "/chat?room=1"
        assert pair.client.response is not None
        assert pair.client.response.status_code == 101
        assert pair.server.response is not None
        assert pair.server.response.status_code == 101
        # In memory there are no addresses.
        assert pair.client.remote_address is None
        assert pair.client.local_address is None


@pytest.mark.anyio
async def test_addresses_and_close_over_real_sockets() -> None:
    servers: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        servers.append(ws)
        await echo(ws)

    async with run_server(handler) as server:
        with anyio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as client:
                await client.send("hi")
                assert await client.recv() == "hi"
                [ws] = servers
                assert client.remote_address == ("127.0.0.1", server.port)
                assert client.local_address == ws.remote_address
                assert ws.local_address == client.remote_address
            await ws.wait_closed()
    assert client.close_code == ws.close_code == 1000


@pytest.mark.anyio
async def test_server_initiated_close_over_real_sockets() -> None:
    async def handler(ws: WebSocketConnection) -> None:
        await ws.send("bye")
        await ws.aclose(CloseCode.GOING_AWAY, "restart")

    async with run_server(handler) as server:
        with anyio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/", close_timeout=30) as ws:
                assert await ws.recv() == "bye"
                with pytest.raises(ConnectionClosedOK) as exc_info:
                    await ws.recv()
                # The server closed TCP: no need to wait for close_timeout.
                await ws.wait_closed()
    assert str(exc_info.value) == (
        "received 1001 (going away) restart; then sent 1001 (going away) restart"
    )


@pytest.mark.anyio
async def test_cancelling_serve_websocket_closes_connections_with_1001() -> None:
    """The teardown of the connection layer under a server's nursery: the
    handler is cancelled, yet the client gets a close frame."""
    handler_started = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        handler_started.set()
        await anyio.sleep_forever()

    server_scope = anyio.CancelScope()

    async def serve(*, task_status: anyio.abc.TaskStatus[WebSocketServer]) -> None:
        with server_scope:
            await serve_websocket(handler, "127.0.0.1", 0, task_status=task_status)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            server: WebSocketServer = await task_group.start(serve)
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await handler_started.wait()
                server_scope.cancel()
                with pytest.raises(ConnectionClosedOK) as exc_info:
                    await ws.recv()
    assert str(exc_info.value) == "received 1001 (going away); then sent 1001 (going away)"


@pytest.mark.anyio
async def test_invalid_options_are_rejected_at_once() -> None:
    stream, _ = memory_stream_pair()
    with pytest.raises(ValueError, match="max_queue"):
        WebSocketConnection(stream, Role.CLIENT, max_queue=0)
    with pytest.raises(ValueError, match="ping_interval"):
        WebSocketConnection(stream, Role.CLIENT, ping_interval=-1)
    with pytest.raises(TypeError, match="close_timeout"):
        WebSocketConnection(stream, Role.CLIENT, close_timeout="1")  # type: ignore[arg-type]  # tested
    with pytest.raises(TypeError, match="max_size"):
        WebSocketConnection(stream, Role.CLIENT, max_size=True)
    WebSocketConnection(stream, Role.CLIENT, write_limit=0, close_timeout=0, max_size=None)
    with pytest.raises(TypeError, match="ByteStream"):
        as_byte_stream(object())  # type: ignore[arg-type]  # tested


@pytest.mark.anyio
async def test_a_connection_that_never_opened() -> None:
    stream, peer = memory_stream_pair()
    ws = WebSocketConnection(stream, Role.CLIENT)
    assert ws.state is State.CONNECTING
    assert ws.close_code is None
    with pytest.raises(ConnectionClosedError, match=r"^no close frame received or sent$"):
        await ws.recv()
    with pytest.raises(ConnectionClosedError):
        await ws.send("no")
    with pytest.raises(ConnectionClosedError):
        await ws.ping()
    await ws.aclose()
    await ws.aclose()
    assert state_of(ws) is State.CLOSED
    with pytest.raises(anyio.EndOfStream):
        await peer.receive()  # our end was closed


@pytest.mark.anyio
async def test_closing_state_refuses_new_frames_but_delivers_crossing_messages() -> None:
    async with open_connection_pair() as pair:
        pair.server_stream.pause_reads()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pair.client.aclose)
                await anyio.wait_all_tasks_blocked()
                assert state_of(pair.client) is State.CLOSING
                for call in (pair.client.send("x"), pair.client.ping(), pair.client.pong()):
                    with pytest.raises(ConnectionClosedError, match=r"^sent 1000 \(OK\); no close"):
                        await call
                # The server has not seen our close yet: it still talks.
                await pair.server.send("crossing our close frame")
                pair.server_stream.resume_reads()
        assert pair.client.close_code == 1000
        assert await pair.client.recv() == "crossing our close frame"
        with pytest.raises(ConnectionClosedOK):
            await pair.client.recv()


@pytest.mark.anyio
async def test_aclose_resumes_a_reader_paused_by_backpressure() -> None:
    async with open_connection_pair(client_options={"max_queue": 1, "close_timeout": 60}) as pair:
        with anyio.fail_after(TIMEOUT):
            await pair.server.send("first")
            await anyio.wait_all_tasks_blocked()  # the client read it: its queue is full
            for number in range(5):
                await pair.server.send(f"unread {number}")
            await anyio.wait_all_tasks_blocked()
            assert memory_stream(pair.client_stream).unread > 0
            # The reader must read again to find the close frame's answer.
            await pair.client.aclose()
        assert pair.client.close_code == 1000
        assert await pair.client.recv() == "first"
        # Messages that arrived while closing with a full queue were dropped:
        # memory stays bounded when nobody reads.
        with pytest.raises(ConnectionClosedOK):
            await pair.client.recv()


@pytest.mark.anyio
async def test_send_waiting_for_room_raises_when_the_connection_closes() -> None:
    options = {"compression": None, "write_limit": 10}
    async with open_connection_pair(client_options=options) as pair:
        pair.client_stream.pause_writes()
        await pair.client.send(b"x" * 100)
        errors: list[ConnectionClosed] = []

        async def send() -> None:
            try:
                await pair.client.send(b"waits")
            except ConnectionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                assert errors == []
                memory_stream(pair.server_stream).abort()  # the peer is gone
                pair.client_stream.resume_writes()
        [error] = errors
        assert str(error) == "no close frame received or sent"


@pytest.mark.trio
async def test_closing_while_a_keepalive_ping_waits_is_not_a_keepalive_failure(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with open_connection_pair(
        client_options={"ping_interval": 10, "ping_timeout": 5, "close_timeout": 1},
        server_options={"ping_interval": None},
    ) as pair:
        pair.server_stream.pause_reads()
        await trio.sleep(12)  # a ping is outstanding
        await pair.client.aclose()
        with pytest.raises(ConnectionClosedError) as exc_info:
            await pair.client.recv()
        await trio.sleep(10)
    assert str(exc_info.value) == "sent 1000 (OK); no close frame received"
    assert not [r for r in caplog.records if "keepalive" in r.getMessage()]


class MinimalTrioStream:
    """Just what ``TrioStreamLike`` asks for: no ``send_eof``, no socket."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview, /) -> None:
        await self._stream.send_all(data)

    async def receive_some(self, max_bytes: int | None = None, /) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


@pytest.mark.trio
async def test_trio_stream_adapter_translates_errors() -> None:
    near, far = trio.testing.memory_stream_pair()
    stream = as_byte_stream(near)
    await far.send_all(b"data")
    assert await stream.receive() == b"data"
    await stream.send_eof()
    assert await far.receive_some() == b""  # EOF
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"after EOF")
    await far.aclose()
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    assert stream.extra_attributes == {}  # no socket anywhere

    near, far = trio.testing.memory_stream_pair()
    stream = as_byte_stream(MinimalTrioStream(near))
    with pytest.raises(NotImplementedError):
        await stream.send_eof()
    await far.aclose()
    with pytest.raises(anyio.BrokenResourceError):
        await stream.send(b"nobody listens")
    await stream.aclose()


# -- trio streams -----------------------------------------------------------------


@pytest.mark.trio
async def test_wrap_over_trio_ssl_streams() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client_tls = trio.SSLStream(client_transport, client_context, server_hostname="localhost")
    server_tls = trio.SSLStream(server_transport, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        servers: list[WebSocketConnection] = []

        async def accept() -> None:
            servers.append(await wrap_server_stream(nursery, server_tls))

        nursery.start_soon(accept)
        with trio.fail_after(TIMEOUT):
            client = await wrap_client_stream(nursery, client_tls, "localhost")
            await trio.testing.wait_all_tasks_blocked()
            [server] = servers
            await client.send("over TLS")
            assert await server.recv() == "over TLS"
            await server.send(b"\x00" * 100_000)
            assert await client.recv() == b"\x00" * 100_000
            await client.aclose()
            await server.wait_closed()
        assert client.close_code == server.close_code == 1000
        assert client.remote_address is None


@pytest.mark.trio
async def test_wrap_over_trio_socket_streams() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        port = listeners[0].socket.getsockname()[1]
        client_stream = await trio.open_tcp_stream("127.0.0.1", port)
        server_stream = await listeners[0].accept()
        servers: list[WebSocketConnection] = []

        async def accept() -> None:
            servers.append(await wrap_server_stream(nursery, server_stream))

        nursery.start_soon(accept)
        with trio.fail_after(TIMEOUT):
            client = await wrap_client_stream(nursery, client_stream, "127.0.0.1")
            await trio.testing.wait_all_tasks_blocked()
            [server] = servers
            assert client.remote_address == ("127.0.0.1", port)
            assert client.local_address == server.remote_address
            # A TCP reset reaches the user as the OSError behind it.
            client_stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            client_stream.socket.close()
            with pytest.raises(ConnectionClosedError) as exc_info:
                await server.recv()
            await client.aclose()
        await listeners[0].aclose()
    assert str(exc_info.value) == "no close frame received or sent"
    assert isinstance(exc_info.value.__cause__, OSError)


# -- a misbehaving peer ------------------------------------------------------------


def _bad_frame(peer: RawPeer, first: int, payload: bytes, *, masked: bool | None = None) -> bytes:
    if masked is None:
        masked = peer.is_client
    mask = b"\x01\x02\x03\x04" if masked else None
    frame = Frame(Opcode.BINARY, payload).serialize(mask_key=mask)
    header = serialize_header(first, len(payload), mask)
    return header + frame[len(header) :]


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize(
    ("first", "payload", "wrong_mask", "code", "cause"),
    [
        (0x80 | 0x20 | 0x1, b"rsv2", False, 1002, ProtocolError),
        (0x83, b"", False, 1002, ProtocolError),
        (0x81, b"masking", True, 1002, ProtocolError),
        (0x80, b"continuation", False, 1002, ProtocolError),
        (0x09, b"", False, 1002, ProtocolError),
        (0x88, b"\x03\xe7", False, 1002, ProtocolError),
        (0x81, b"caf\xc3", False, 1007, UnicodeDecodeError),
        (0x88, b"\x03\xe8\xff", False, 1007, UnicodeDecodeError),
        (0x82, b"x" * 11, False, 1009, PayloadTooBig),
    ],
    ids=[
        "reserved-bit",
        "unknown-opcode",
        "masking",
        "unexpected-continuation",
        "fragmented-ping",
        "bad-close-code",
        "invalid-utf8",
        "invalid-utf8-close-reason",
        "too-big",
    ],
)
async def test_peer_protocol_errors_fail_the_connection(
    side: str,
    first: int,
    payload: bytes,
    wrong_mask: bool,
    code: int,
    cause: type[Exception],
) -> None:
    async with open_raw_pair(side, max_size=10) as raw:
        await raw.peer.send_frame(Frame(Opcode.TEXT, b"fine"))
        masked = (not raw.peer.is_client) if wrong_mask else None
        await raw.peer.send_raw(_bad_frame(raw.peer, first, payload, masked=masked))
        with anyio.fail_after(TIMEOUT):
            assert await raw.ws.recv() == "fine"
            with pytest.raises(ConnectionClosedError) as exc_info:
                await raw.ws.recv()
            frames = await raw.peer.receive_until_eof()
            await raw.ws.wait_closed()
        assert exc_info.value.rcvd is None
        assert exc_info.value.sent is not None
        assert exc_info.value.sent.code == code
        assert str(exc_info.value).startswith(f"sent {code} ")
        assert str(exc_info.value).endswith("; no close frame received")
        assert isinstance(exc_info.value.__cause__, cause)
        assert close_codes(frames) == [code]
        assert raw.ws.state is State.CLOSED
        assert raw.ws.close_code == CloseCode.ABNORMAL_CLOSURE


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["deflate", None])
async def test_max_size_is_enforced_end_to_end(compression: str | None) -> None:
    async with open_connection_pair(
        client_options={"max_size": 1000, "compression": compression},
        server_options={"compression": compression},
    ) as pair:
        await pair.server.send("x" * 1000)
        await pair.server.send("x" * 1001)
        with anyio.fail_after(TIMEOUT):
            assert await pair.client.recv() == "x" * 1000
            with pytest.raises(ConnectionClosedError) as client_info:
                await pair.client.recv()
            with pytest.raises(ConnectionClosedError) as server_info:
                await pair.server.recv()
        assert isinstance(client_info.value.__cause__, PayloadTooBig)
        assert client_info.value.sent == Close(1009, "message exceeds limit of 1000 bytes")
        assert server_info.value.rcvd == Close(1009, "message exceeds limit of 1000 bytes")
        assert (pair.client.extension is not None) is (compression is not None)


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_frames_that_arrive_with_the_handshake_are_received(side: str) -> None:
    mask = b"\x00\x01\x02\x03" if side == "server" else None
    first = Frame(Opcode.TEXT, b"early").serialize(mask_key=mask)
    first += Frame(Opcode.PING, b"early ping").serialize(mask_key=mask)
    async with open_raw_pair(side, first_data=first) as raw:
        with anyio.fail_after(TIMEOUT):
            assert await raw.ws.recv() == "early"
            assert await raw.peer.receive_frame() == Frame(Opcode.PONG, b"early ping")


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_a_close_that_arrives_with_the_handshake_closes(side: str) -> None:
    mask = b"\x00\x01\x02\x03" if side == "server" else None
    first = Frame(Opcode.TEXT, b"only").serialize(mask_key=mask)
    first += Frame(Opcode.CLOSE, Close(1000, "done").serialize()).serialize(mask_key=mask)
    async with open_raw_pair(side, first_data=first) as raw:
        with anyio.fail_after(TIMEOUT):
            assert [message async for message in raw.ws] == ["only"]
            assert await raw.peer.receive_frame() == Frame(
                Opcode.CLOSE, Close(1000, "done").serialize()
            )
            if side == "client":
                await raw.peer.stream.aclose()  # the server closes TCP first
            await raw.ws.wait_closed()
        assert raw.ws.close_code == 1000


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.usefixtures("schedule_point_per_call")
async def test_send_racing_a_peer_failure_raises_connection_closed(side: str) -> None:
    """A bad frame processed while send() yields makes send() raise
    ConnectionClosed, never the core's ProtocolError."""
    async with open_raw_pair(side, ping_interval=None) as raw:
        await raw.peer.send_raw(
            raw.peer.serialize(Frame(Opcode.TEXT, b"")).replace(b"\x81", b"\x83", 1)
        )

        async def keep_sending() -> None:
            for _ in range(100):  # bounded: the reader fails the connection at once
                await raw.ws.send("hello")

        expected = r"^sent 1002 \(protocol error\) invalid opcode 0x3"
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError, match=expected):
            await keep_sending()


@pytest.mark.anyio
async def test_breaking_out_of_async_for_leaves_nothing_to_finalize() -> None:
    """The connection is its own iterator: leaving ``async for`` early creates
    no async generator for the event loop to finalize (and warn about)."""
    async with open_connection_pair() as pair:
        for text in ("one", "two", "three"):
            await pair.client.send(text)
        received: list[str | bytes] = []
        with anyio.fail_after(TIMEOUT):
            async for message in pair.server:
                received.append(message)
                if message == "two":
                    break
            assert aiter(pair.server) is pair.server
            assert await pair.server.recv() == "three"
    assert received == ["one", "two"]


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["client", "server"])
async def test_messages_arriving_with_the_close_frame_are_all_delivered(side: str) -> None:
    """More than max_queue messages followed by the peer's close frame, all in
    one read: every message was sent to the user and comes out of recv()."""
    async with open_raw_pair(side, max_queue=2, ping_interval=None) as raw:
        frames = [Frame(Opcode.TEXT, f"message {n}".encode()) for n in range(10)]
        frames.append(Frame(Opcode.CLOSE, Close(1000).serialize()))
        await raw.peer.send_raw(b"".join(raw.peer.serialize(frame) for frame in frames))
        with anyio.fail_after(TIMEOUT):
            received = [message async for message in raw.ws]
    assert received == [f"message {n}" for n in range(10)]
