"""The connection's fast paths over real sockets, on both backends: direct
socket reads and writes on trio, a protocol of the connection's own under
asyncio's transport and shared schedule points on asyncio. Whatever path a
frame takes, what arrives is what was sent, in order, and a busy connection
never starves other tasks."""

from __future__ import annotations

import gc
import math
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trustme

import trio_ws
from tests.interop.peers import wait_until
from tests.io_helpers import SteppingClock, echo, serving
from trio_ws import State, WebSocketConnection
from trio_ws._streams import close_socket
from trio_ws._waits import ASYNCIO_YIELD_EVERY, TRIO_TURN
from trio_ws.connection import _GATHER_BYTES
from trio_ws.protocol.machine import Role

pytestmark = pytest.mark.anyio


async def test_plain_tcp_connections_take_the_fast_paths(anyio_backend: tuple[str, Any]) -> None:
    seen: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        seen.append(ws)
        await echo(ws)

    with anyio.fail_after(10):
        async with (
            serving(handler) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("hi")
            assert await ws.recv() == "hi"
            for connection in (ws, seen[0]):
                assert connection._eager_write is not None
                # Direct reads where anyio's stream is a bare socket (trio),
                # through a protocol of our own on the transport (asyncio).
                on_trio = anyio_backend[0] == "trio"
                assert (connection._eager_socket is not None) is on_trio
                assert (connection._protocol is not None) is not on_trio
                if connection._protocol is not None:
                    transport = connection._protocol.transport
                    assert transport.get_protocol() is connection._protocol


async def test_the_writer_starts_only_when_a_write_has_to_wait() -> None:
    seen: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        seen.append(ws)
        await echo(ws)

    big = os.urandom(8 << 20)  # more than the socket buffers take at once
    with anyio.fail_after(10):
        async with (
            serving(handler, max_size=None) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws,
        ):
            # Ping-pong: every frame goes straight to the socket, no writer.
            for n in range(3):
                await ws.send(f"hi {n}")
                assert await ws.recv() == f"hi {n}"
            assert [c._writer_scope for c in (ws, seen[0])] == [None, None]
            # A message the socket cannot take at once needs the writer,
            # and what is sent after it waits its turn behind it.
            await ws.send(big)
            await ws.send("after")
            scope = ws._writer_scope
            assert scope is not None
            assert await ws.recv() == big
            assert await ws.recv() == "after"
            assert seen[0]._writer_scope is not None  # echoing the big one
            assert not scope.cancel_called


async def test_tls_connections_take_the_stream(ca: trustme.CA) -> None:
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    with anyio.fail_after(10):
        async with serving(ssl=server_ssl) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, ssl=client_ssl) as ws:
                assert ws._eager_write is None
                assert ws._eager_socket is None
                await ws.send(b"x" * 100_000)
                assert await ws.recv() == b"x" * 100_000


@pytest.mark.parametrize("reader_delay", [0.0, 0.001])
async def test_mixed_sizes_arrive_whole_and_in_order(reader_delay: float) -> None:
    # Small frames go out directly; a large one does not fit in the socket
    # buffer at once, so what is left of it, and every frame after it, must go
    # through the writer, behind it. A slow reader makes that happen often.
    sizes = [16, 1, 70_000, 5, 1 << 20, 300, 0, 65_536, 17, 2_000_000, 3]
    messages = [os.urandom(n) for n in sizes * 3]
    received: list[bytes | str] = []

    async def handler(ws: WebSocketConnection) -> None:
        for _ in messages:
            received.append(await ws.recv())
            await anyio.sleep(reader_delay)
        await ws.send("done")

    with anyio.fail_after(30):
        async with serving(handler, max_size=None) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, max_size=None) as ws:
                for message in messages:
                    await ws.send(message)
                assert await ws.recv() == "done"
    assert received == messages


@pytest.fixture
def quarter_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call of a connection reads the clock once: a trio turn lasts
    four calls that need not wait."""
    monkeypatch.setattr(trio_ws.connection, "_clock", SteppingClock(TRIO_TURN / 4))


def calls_per_schedule_point(anyio_backend: tuple[str, Any]) -> int:
    return 4 if anyio_backend[0] == "trio" else ASYNCIO_YIELD_EVERY


async def count_ticks_during(body: Callable[[], Awaitable[object]]) -> int:
    """How many times another task ran while ``body()`` ran."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        await body()
        during = ticks - before
        task_group.cancel_scope.cancel()
    return during


@pytest.mark.usefixtures("quarter_turns")
async def test_a_busy_sender_lets_other_tasks_run(anyio_backend: tuple[str, Any]) -> None:
    async def sink(ws: WebSocketConnection) -> None:
        async for _ in ws:
            pass

    sends = ASYNCIO_YIELD_EVERY * 20

    async def send_all(ws: WebSocketConnection) -> None:
        for _ in range(sends):
            await ws.send(b"x")

    with anyio.fail_after(30):
        async with (
            serving(sink) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            during = await count_ticks_during(lambda: send_all(ws))
    # At least one schedule point per turn (trio) or per ASYNCIO_YIELD_EVERY
    # sends (asyncio): the ticker ran in between.
    assert during >= sends // calls_per_schedule_point(anyio_backend) - 1


@pytest.mark.usefixtures("quarter_turns")
async def test_a_busy_receiver_lets_other_tasks_run(anyio_backend: tuple[str, Any]) -> None:
    count = ASYNCIO_YIELD_EVERY * 20

    async def flood(ws: WebSocketConnection) -> None:
        for _ in range(count):
            await ws.send(b"y")
        await ws.wait_closed()

    async def receive_all(ws: WebSocketConnection) -> None:
        for _ in range(count):
            assert await ws.recv() == b"y"

    with anyio.fail_after(30):
        async with serving(flood, max_queue=None) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, max_queue=None) as ws:
                # Let the messages pile up, then take them all at full speed.
                with anyio.move_on_after(0.5):
                    while ws._messages is None or len(ws._messages) < count:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert ws._messages is not None
                assert len(ws._messages) == count
                during = await count_ticks_during(lambda: receive_all(ws))
    assert during >= count // calls_per_schedule_point(anyio_backend) - 1


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_within_a_turn_a_send_is_a_cancel_point_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trio_ws.connection, "_clock", SteppingClock(0.0))  # one long turn
    received: list[str] = []

    async def collect(ws: WebSocketConnection) -> None:
        async for message in ws:
            received.append(str(message))
            if message == "last":
                await ws.send("done")

    async def send_ten(ws: WebSocketConnection) -> None:
        for i in range(10):
            await ws.send(f"m{i}")

    with anyio.fail_after(10):
        async with (
            serving(collect) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("first")  # the turn's one schedule point
            assert await count_ticks_during(lambda: send_ten(ws)) == 0
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ws.send("cancelled")
            assert scope.cancelled_caught
            await ws.send("last")
            assert await ws.recv() == "done"
    assert received == ["first", *(f"m{i}" for i in range(10)), "last"]


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_once_turns_are_over_every_send_is_a_schedule_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trio_ws.connection, "_clock", SteppingClock(TRIO_TURN * 2))

    async def send_ten(ws: WebSocketConnection) -> None:
        for _ in range(10):
            await ws.send(b"x")

    with anyio.fail_after(10):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            # (Trio runs the two tasks of a pass in either order: one tick
            # may fall outside the count.)
            assert await count_ticks_during(lambda: send_ten(ws)) >= 9


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_coming_back_from_a_wait_in_recv_starts_a_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two readings of the clock make a turn: a send right after recv() came
    # back from waiting is then no schedule point, as in an echo loop. (The
    # reader, once it lends recv() the socket, reads the clock when it wakes:
    # no loans here, or its readings would move this clock too.)
    monkeypatch.setattr(trio_ws.connection, "_clock", SteppingClock(TRIO_TURN * 0.6))
    monkeypatch.setattr(trio_ws.connection, "_LEND_WITHIN", -math.inf)
    with anyio.fail_after(10):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("a")  # a schedule point, before the frame is written
            await ws.send("b")  # within the turn: not one
            # Nothing yielded since "a" was written: the echo cannot be here.
            assert not ws._messages
            assert await ws.recv() == "a"  # so this waited
            assert await count_ticks_during(lambda: ws.send("c")) == 0
            assert await ws.recv() == "b"
            assert await ws.recv() == "c"


class DirectAttempts(WebSocketConnection):
    """Counts the frames send() tries to write straight to the socket or
    transport, whether or not all of it fits."""

    attempts = 0

    def _start(self, task_group: Any) -> None:
        super()._start(task_group)
        direct = self._eager_write
        assert direct is not None

        def counted(data: bytes) -> int:
            self._count_direct()
            return direct(data)

        self._eager_write = counted

    def _count_direct(self) -> None:
        DirectAttempts.attempts += 1


class CountingConnection(DirectAttempts):
    """Counts the system calls that write frames: direct writes from send(),
    and the writer's."""

    writes = 0

    def _count_direct(self) -> None:
        CountingConnection.writes += 1

    async def _send_all(self, sock: Any, data: bytes) -> None:
        CountingConnection.writes += 1
        await super()._send_all(sock, data)


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_a_stream_of_small_messages_is_gathered_into_fewer_writes() -> None:
    count = 2000
    received: list[bytes | str] = []

    async def sink(ws: WebSocketConnection) -> None:
        async for message in ws:
            received.append(message)
            if len(received) == count:
                await ws.send("got them")

    CountingConnection.writes = 0
    with anyio.fail_after(30):
        async with (
            serving(sink) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", create_connection=CountingConnection
            ) as ws,
        ):
            for i in range(count):
                await ws.send(i.to_bytes(4, "big"))
            writes = CountingConnection.writes
            assert await ws.recv() == "got them"
            # Once the sender stops and waits, the next message is direct again.
            before = CountingConnection.writes
            await ws.send(b"ping")
            assert CountingConnection.writes == before + 1
    assert received[:count] == [i.to_bytes(4, "big") for i in range(count)]
    assert writes < count / 2, writes


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_on_asyncio_send_waits_for_room_in_the_transport() -> None:
    # Against a peer that stops reading, send() writes each frame into the
    # transport while its buffer holds at most write_limit, and otherwise
    # waits for it to drain, itself: no frame waits for the writer task,
    # which never starts, and the buffer never holds much more than the
    # limit. Once the peer reads again, every message arrives, in order.
    release = anyio.Event()
    frame = os.urandom(2**16)
    wrong: list[bytes | str] = []
    arrived = 0

    async def slow(ws: WebSocketConnection) -> None:
        nonlocal arrived
        await release.wait()
        async for message in ws:
            arrived += 1
            if message != frame:
                wrong.append(message)

    with anyio.fail_after(20):
        async with serving(slow, max_queue=1, max_size=None) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, compression=None) as ws:
                assert ws._protocol is not None
                assert ws.write_limit is not None
                transport = ws._protocol.transport
                buffered: list[int] = []
                with anyio.move_on_after(1) as stalled:
                    for _ in range(1000):  # 64 MiB: more than the sockets hold
                        await ws.send(frame)
                        buffered.append(transport.get_write_buffer_size())
                assert stalled.cancelled_caught  # send() waited for room
                assert max(buffered) <= ws.write_limit + len(frame) + 14
                assert ws._writer_scope is None  # the writer never started
                sent = len(buffered)
                release.set()
            assert arrived == sent
            assert not wrong


async def test_a_streaming_sender_writes_large_frames_directly(
    anyio_backend: tuple[str, Any],
) -> None:
    # Gathering pays for small frames; a frame of _GATHER_BYTES or more would
    # only take a detour through the writer task.
    large = b"L" * _GATHER_BYTES
    received: list[bytes | str] = []

    async def sink(ws: WebSocketConnection) -> None:
        async for message in ws:
            received.append(message)
            if len(received) == 3:
                await ws.send("got them")

    DirectAttempts.attempts = 0
    with anyio.fail_after(10):
        async with (
            serving(sink, max_size=None) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/",
                compression=None,  # frames as large as their messages
                create_connection=DirectAttempts,
            ) as ws,
        ):
            await ws.send(b"small")  # direct: nothing is streaming yet
            assert ws._streaming  # it all went: a stream may be starting
            await ws.send(large)
            assert DirectAttempts.attempts == 2
            await ws.send(b"small again")  # still streaming: to the writer
            assert DirectAttempts.attempts == 2
            assert await ws.recv() == "got them"
    assert received == [b"small", large, b"small again"]


async def test_the_side_that_closes_tcp_closes_a_plain_socket_at_once(
    anyio_backend: tuple[str, Any],
) -> None:
    # The server closes TCP once it has answered the client's close frame.
    # Over a plain socket (trio) whoever reads the close frame does that in
    # the same step: the reader, or recv() reading the socket the reader lent
    # it; under asyncio's transport the protocol's callback does. Either way
    # there is nothing to wait for, and by the time the handler sees the
    # close, the connection is closed.
    seen: list[State] = []
    handled = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        async for _ in ws:
            pass
        seen.append(ws.state)
        handled.set()

    with anyio.fail_after(10):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hi")
            assert ws.state is State.CLOSED
            assert ws.close_code == 1000
            await handled.wait()
    assert seen == [State.CLOSED]


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_close_socket_wakes_a_task_waiting_on_the_socket() -> None:
    import trio

    near, far = socket.socketpair()
    near.setblocking(False)
    stream = await anyio.abc.SocketStream.from_socket(near)
    woken: list[str] = []

    async def wait() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await trio.lowlevel.wait_readable(near)
        woken.append("closed")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            close_socket(near)
    assert woken == ["closed"]
    assert near.fileno() == -1
    await stream.aclose()  # nothing left to close
    assert far.recv(1) == b""  # the peer sees EOF
    far.close()


class HandshakeCounting(WebSocketConnection):
    """Counts the direct socket writes made during the opening handshake."""

    direct_writes = 0

    async def _send_all(self, sock: Any, data: bytes) -> None:
        if self._machine is None:
            HandshakeCounting.direct_writes += 1
        await super()._send_all(sock, data)


async def test_the_opening_handshake_uses_a_plain_socket_directly(
    anyio_backend: tuple[str, Any],
) -> None:
    HandshakeCounting.direct_writes = 0
    with anyio.fail_after(10):
        async with (
            serving(create_connection=HandshakeCounting) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/", create_connection=HandshakeCounting
            ) as ws,
        ):
            await ws.send("hi")
            assert await ws.recv() == "hi"
    # The request and the 101: straight to the socket on trio, through the
    # stream on asyncio.
    assert HandshakeCounting.direct_writes == (2 if anyio_backend[0] == "trio" else 0)


@pytest.mark.parametrize("ending", ["reset", "eof"])
async def test_a_server_that_hangs_up_during_the_handshake(ending: str) -> None:
    [listener] = (await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)).listeners
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def hang_up() -> None:
        stream = await listener.accept()
        await stream.receive()  # the request
        if ending == "reset":
            # SO_LINGER with a zero timeout: close() sends a RST, not a FIN.
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as task_group:
            task_group.start_soon(hang_up)
            with pytest.raises(trio_ws.InvalidHandshake) as info:
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/"):
                    pass  # pragma: no cover  # never opens
    if ending == "reset":
        assert "connection lost during the opening handshake" in str(info.value)
        assert isinstance(info.value.__cause__, ConnectionResetError)
    else:
        assert isinstance(info.value.__cause__, EOFError)


async def test_a_client_that_resets_during_the_handshake_leaves_the_server_serving() -> None:
    with anyio.fail_after(10):
        async with serving() as server:
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
@pytest.mark.parametrize("ending", ["eof", "reset", "closed"])
async def test_direct_handshake_reads_fail_as_the_stream_would(ending: str) -> None:
    expected: type[Exception] = {
        "eof": anyio.EndOfStream,
        "reset": anyio.BrokenResourceError,
        "closed": anyio.ClosedResourceError,
    }[ending]
    errors: list[Exception] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        far = socket.create_connection(listener.getsockname())
        near, _ = listener.accept()
    with far:
        near.setblocking(False)
        stream = await anyio.abc.SocketStream.from_socket(near)
        async with stream:
            connection = WebSocketConnection(stream, Role.SERVER)
            assert connection._eager_socket is near

            async def read() -> None:
                try:
                    await connection._receive_handshake()
                except Exception as exc:
                    errors.append(exc)

            with anyio.fail_after(10):
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(read)
                    await anyio.wait_all_tasks_blocked()  # waiting for the socket
                    if ending == "closed":
                        close_socket(near)
                    else:
                        if ending == "reset":
                            # SO_LINGER with a zero timeout: a RST, not a FIN.
                            linger = struct.pack("ii", 1, 0)
                            far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        far.close()
    assert [type(error) for error in errors] == [expected]


def timer_of(ws: WebSocketConnection) -> object:
    return ws._heartbeat_timer


def heartbeat_tasks() -> int:
    """How many heartbeat tasks run now (asyncio)."""
    import asyncio

    return sum(task.get_name() == "trio_ws heartbeat" for task in asyncio.all_tasks())


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_on_asyncio_the_heartbeat_starts_when_the_first_ping_is_due() -> None:
    # Until then a timer stands in for the task; from then on it pings as
    # on every other path, and the peer's pongs measure the latency.
    seen: list[WebSocketConnection] = []

    async def handler(ws: WebSocketConnection) -> None:
        seen.append(ws)
        await echo(ws)

    with anyio.fail_after(10):
        async with serving(handler, ping_interval=None) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.open_websocket_url(url, ping_interval=30) as idle:
                await idle.send("hi")
                assert await idle.recv() == "hi"
                assert timer_of(idle) is not None
                assert heartbeat_tasks() == 0
            # Closed before its first ping: the timer went with it.
            assert timer_of(idle) is None
            assert heartbeat_tasks() == 0
            async with trio_ws.open_websocket_url(url, ping_interval=0.02) as ws:
                await wait_until(lambda: ws.latency > 0)
                assert ws._heartbeat_timer is None
                assert heartbeat_tasks() == 1
                await ws.send("still there")
                assert await ws.recv() == "still there"
            assert heartbeat_tasks() == 0


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """Only reference counting frees objects meanwhile."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def live_connections() -> list[WebSocketConnection]:
    return [o for o in gc.get_objects() if isinstance(o, WebSocketConnection)]


@pytest.mark.usefixtures("no_cycle_collector")
async def test_a_closed_connection_is_freed_without_the_cycle_collector() -> None:
    # A connection kept in a reference cycle lingers, with everything it
    # holds, until the collector's next pass over its generation: for a
    # server or client opening connections all the time, collections many
    # times as frequent and slow. Both ends, on both backends.
    async def handler(ws: WebSocketConnection) -> None:
        async for message in ws:
            await ws.send(message)

    with anyio.fail_after(10):
        async with serving(handler) as server:
            for _ in range(3):
                async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                    await ws.send(b"x" * 100_000)
                    assert await ws.recv() == b"x" * 100_000
                del ws
            # The server's side is done once its handler task is.
            await wait_until(lambda: not server.connections)
            assert live_connections() == []
