"""On trio, the reader lends its socket to a task that keeps calling recv().

After the reader wakes a waiting ``recv()`` with a message, the next
``recv()`` waits on the socket itself and reads its message with no hand-off
from the reader, as long as the scheduler is quick to run woken tasks. These
tests pin down what must not change with it: the reader takes the socket back
as soon as ``recv()`` is not waiting (pings, the peer's close and EOF are
still seen), cancelling a ``recv()`` loses nothing, a failed connection ends
a ``recv()`` waiting on the socket at once, and lending stops while the
scheduler is busy. The connection's clock is made to stand still (or to move
in big steps) so that none of this depends on the machine's speed.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
import trio
import trio.testing

import trio_ws
from tests.io_helpers import SteppingClock, serving
from trio_ws import ConnectionClosedError, WebSocketConnection
from trio_ws.connection import _LEND_WITHIN
from trio_ws.protocol.frames import CloseCode

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SteppingClock:
    """The connection's clock, standing still until a test moves it."""
    stepping = SteppingClock(0.0)
    monkeypatch.setattr(trio_ws.connection, "_clock", stepping)
    return stepping


async def lent(ws: WebSocketConnection, message: str = "first") -> None:
    """Exchange one message over ``ws`` (an echo server's client): the
    reader hands the echo to a waiting recv(), and then lends the socket."""
    await ws.send(message)
    assert await ws.recv() == message
    assert ws._lent


@pytest.mark.usefixtures("clock")
async def test_recv_reads_the_socket_the_reader_lent_it() -> None:
    with anyio.fail_after(10):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
            anyio.create_task_group() as task_group,
        ):
            await lent(ws)

            async def send_once_recv_waits() -> None:
                await trio.testing.wait_all_tasks_blocked()
                # recv() waits on the socket itself; the reader is parked.
                assert ws._recv_reading
                assert ws._reader_wakeup is not None
                await ws.send("second")

            # The same task calls recv() again at once, as a loop would.
            task_group.start_soon(send_once_recv_waits)
            assert await ws.recv() == "second"
            for n in range(20):  # a loop of echoes stays on the lent socket
                await ws.send(f"m{n}")
                assert await ws.recv() == f"m{n}"
                assert ws._lent


@pytest.mark.usefixtures("clock")
async def test_the_reader_takes_the_socket_back_to_answer_pings() -> None:
    # After one message the client calls recv() no more: its reader must
    # read again, or the server's ping would go unanswered.
    answered = anyio.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.send(await ws.recv())
        pong = await ws.ping()
        await pong
        answered.set()
        await ws.wait_closed()

    with anyio.fail_after(10):
        async with (
            serving(handler) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await lent(ws)
            await answered.wait()
            assert not ws._lent


@pytest.mark.usefixtures("clock")
async def test_the_peer_closing_is_seen_without_a_recv() -> None:
    async def handler(ws: WebSocketConnection) -> None:
        await ws.send(await ws.recv())
        await ws.aclose(CloseCode.GOING_AWAY, "bye")

    with anyio.fail_after(10):
        async with serving(handler) as server:
            async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await lent(ws)
                await ws.wait_closed()
            assert ws.close_code == CloseCode.GOING_AWAY
            assert ws.close_reason == "bye"


@pytest.mark.usefixtures("clock")
async def test_a_cancelled_recv_on_the_lent_socket_loses_nothing() -> None:
    with anyio.fail_after(10):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await lent(ws)
            scope = anyio.CancelScope()

            async def cancel_once_recv_waits() -> None:
                await trio.testing.wait_all_tasks_blocked()
                assert ws._recv_reading
                scope.cancel()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(cancel_once_recv_waits)
                with scope:
                    await ws.recv()
                    pytest.fail("nothing was sent: recv() cannot return")
            assert not ws._recv_reading
            # The echoes arrive while nobody waits in recv(): the reader,
            # which took the socket back, queues them for the next calls.
            for n in range(3):
                await ws.send(f"after {n}")
            for n in range(3):
                assert await ws.recv() == f"after {n}"


@pytest.mark.usefixtures("clock")
async def test_recv_with_timeouts_in_a_loop_on_the_lent_socket() -> None:
    # The usual way to time out a recv(): a cancel scope around each call.
    # Timed out on the lent socket or not, every message arrives, in order.
    async def on_request(ws: WebSocketConnection) -> None:
        async for request in ws:
            assert isinstance(request, str)
            await ws.send(f"answer to {request}")

    with anyio.fail_after(10):
        async with (
            serving(on_request) as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("0")
            assert await ws.recv() == "answer to 0"
            timeouts = 0
            for n in range(1, 21):
                with anyio.move_on_after(0.001):
                    await ws.recv()  # nothing asked for yet: times out
                    pytest.fail("an answer before its request")
                timeouts += 1
                await ws.send(str(n))
                assert await ws.recv() == f"answer to {n}"
            assert timeouts == 20


async def test_lending_stops_while_the_scheduler_is_busy(clock: SteppingClock) -> None:
    with anyio.fail_after(10):
        async with (
            serving() as server,
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await lent(ws)
            # Every reading of the clock now finds the reader ran long after
            # recv() returned: it takes the socket back, and lends it no more.
            clock.step = _LEND_WITHIN * 4
            for n in range(5):
                await ws.send(f"busy {n}")
                assert await ws.recv() == f"busy {n}"
            await trio.testing.wait_all_tasks_blocked()
            assert not ws._lent
            assert not ws._recv_reading
            # Quick again: one hand-off, and the socket is lent once more.
            clock.step = 0.0
            for n in range(3):
                await ws.send(f"quick {n}")
                assert await ws.recv() == f"quick {n}"
            assert ws._lent


@pytest.mark.usefixtures("clock")
async def test_failing_the_connection_ends_a_recv_on_the_lent_socket_at_once() -> None:
    # The server stops reading, so the client's close frame cannot be flushed
    # and its socket closes only once close_timeout is over. A recv() waiting
    # on the lent socket must not wait that long to learn that the connection
    # failed.
    release = anyio.Event()

    async def stalled(ws: WebSocketConnection) -> None:
        assert ws._eager_socket is not None
        ws._eager_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await ws.send(await ws.recv())
        await release.wait()  # no more recv(): after one more message, no reads

    stuck = anyio.Event()

    async def fragments() -> AsyncIterator[bytes]:
        yield b"x" * 2**23  # more than the socket buffers hold
        await stuck.wait()

    with anyio.fail_after(10):
        async with (
            serving(stalled, max_queue=1, max_size=None) as server,
            trio_ws.open_websocket_url(
                f"ws://127.0.0.1:{server.port}/",
                compression=None,  # the bytes as they are
                close_timeout=1,
                ping_interval=None,
            ) as ws,
        ):
            sending = anyio.CancelScope()

            async def send_fragments() -> None:
                with sending:
                    await ws.send(fragments())

            async def fail_once_stalled() -> None:
                await trio.testing.wait_all_tasks_blocked()
                assert ws._recv_reading
                assert ws._unsent > 0
                # Cancelling a fragmented send half-way fails the connection
                # with 1011; the close frame waits behind the stalled bytes.
                sending.cancel()

            async with anyio.create_task_group() as task_group:
                await lent(ws)
                await ws.send("fills the server's queue")
                task_group.start_soon(send_fragments)
                task_group.start_soon(fail_once_stalled)
                with pytest.raises(ConnectionClosedError) as caught:
                    await ws.recv()
                assert not ws._closed.is_set()  # still flushing: recv() did not wait
            release.set()
    sent = caught.value.sent
    assert sent is not None
    assert sent.code == CloseCode.INTERNAL_ERROR


@pytest.mark.usefixtures("clock")
async def test_a_lent_socket_closed_under_the_connection() -> None:
    # The stream's owner closes it while the reader has lent the socket and
    # no task waits on it: recv() fails as it would have failed in the reader.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as outer:
        outer.start_soon(listener.serve, _echo_server_stream)
        with anyio.fail_after(10):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with anyio.create_task_group() as task_group:
                ws = await trio_ws.wrap_client_stream(task_group, stream, "127.0.0.1", "/")
                await lent(ws)
                await stream.aclose()
                with pytest.raises(ConnectionClosedError) as caught:
                    await ws.recv()
                assert caught.value.rcvd is None
        outer.cancel_scope.cancel()


async def _echo_server_stream(stream: anyio.abc.SocketStream) -> None:
    async with anyio.create_task_group() as task_group:
        ws = await trio_ws.wrap_server_stream(task_group, stream)
        try:
            async for message in ws:
                await ws.send(message)
        except trio_ws.ConnectionClosed:
            pass
